@ONL
Feature: Online authorization decided by the host
  The acquirer routes each request by BIN to its issuer; the issuer runs its checks
  in a documented order and answers with the DE39 code of the first that fails.
  Approved transactions are booked exactly once; declined ones leave no trace on the account.

  Background:
    Given the host with the shipped test card set
    And the time is 2026-11-22 10:30:00

  @ONL-01
  Scenario: A chip sale with a valid ARQC is approved with an ARPC and debited once
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy"
    Then the host answers 00
    And the answer carries an approval code
    And the answer carries an ARPC in tag 91 that verifies for card "healthy"
    And the account of card "healthy" is debited 25.00

  @ONL-01
  Scenario: A dual-message 0100 holds the amount and its advice captures it
    When terminal TERM0001 sends a chip 0100 for 40.00 with card "healthy"
    Then the host answers 00
    And card "healthy" has 40.00 held and an unchanged balance
    When terminal TERM0001 sends the completion advice of that authorization
    Then the host answers 00
    And the account of card "healthy" is debited 40.00

  @ONL-02
  Scenario: Insufficient funds
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "insufficient-funds"
    Then the host answers 51
    And the account of card "insufficient-funds" is unchanged

  @ONL-03
  Scenario: Expired card
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "expired"
    Then the host answers 54
    And the account of card "expired" is unchanged

  @ONL-04
  Scenario Outline: Cards on the issuer hotlist
    When terminal TERM0001 sends a chip 0200 for 10.00 with card "<card>"
    Then the host answers <code>
    And the account of card "<card>" is unchanged

    Examples:
      | card   | code |
      | lost   | 41   |
      | stolen | 43   |

  @ONL-05
  Scenario: A wrong online PIN, then the third wrong PIN
    When terminal TERM0001 sends a chip 0200 for 10.00 with card "pin-1234" and online PIN 9999
    Then the host answers 55
    When terminal TERM0001 sends a chip 0200 for 10.00 with card "pin-1234" and online PIN 1111
    Then the host answers 55
    When terminal TERM0001 sends a chip 0200 for 10.00 with card "pin-1234" and online PIN 0000
    Then the host answers 75
    When terminal TERM0001 sends a chip 0200 for 10.00 with card "pin-1234" and online PIN 1234
    Then the host answers 75
    And the account of card "pin-1234" is unchanged

  @ONL-05
  Scenario: The right online PIN is approved
    When terminal TERM0001 sends a chip 0200 for 10.00 with card "pin-1234" and online PIN 1234
    Then the host answers 00

  @ONL-06
  Scenario: A tampered cryptogram is declined without an ARPC
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy" and a tampered ARQC
    Then the host answers 05
    And the answer carries no ARPC
    And the issuer recorded a cryptogram failure
    And the account of card "healthy" is unchanged

  @ONL-08
  Scenario Outline: PANs no issuer can serve
    When terminal TERM0001 sends a keyed 0200 for 10.00 EUR with PAN <pan>
    Then the host answers <code>

    Examples:
      | pan              | code |
      | 4761739001010011 | 14   |
      | 4000000000000002 | 15   |

  @ONL-09
  Scenario: Per-transaction amount limit
    When terminal TERM0001 sends a chip 0200 for 50.01 with card "low-limits"
    Then the host answers 61

  @ONL-09
  Scenario: Velocity: the fourth approval inside the window
    When terminal TERM0001 sends a chip 0200 for 1.00 with card "low-limits"
    And terminal TERM0001 sends a chip 0200 for 1.00 with card "low-limits"
    And terminal TERM0001 sends a chip 0200 for 1.00 with card "low-limits"
    Then the host answers 00
    When terminal TERM0001 sends a chip 0200 for 1.00 with card "low-limits"
    Then the host answers 65
    When 11 minutes pass
    And terminal TERM0001 sends a chip 0200 for 1.00 with card "low-limits"
    Then the host answers 00

  @ONL-10
  Scenario Outline: Amounts in currencies with exponents 0, 2 and 3
    When terminal TERM0001 sends a chip 0200 for <amount> with card "<card>"
    Then the host answers 00
    And the request carried DE4 <de4> and DE49 <de49>
    And the account of card "<card>" is debited <amount>

    Examples:
      | card        | amount | de4          | de49 |
      | jpy-healthy | 1000   | 000000001000 | 392  |
      | healthy     | 25.00  | 000000002500 | 978  |
      | kwd-healthy | 12.345 | 000000012345 | 414  |

  @ONL-11
  Scenario: A refund credits the account
    When terminal TERM0001 sends a keyed refund for 15.00 with card "healthy"
    Then the host answers 00
    And the account of card "healthy" is credited 15.00

  @ONL-11
  Scenario: A reversal releases the debit of a sale
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy"
    Then the host answers 00
    When terminal TERM0001 reverses that sale
    Then the host answers 00
    And the account of card "healthy" is unchanged

  @ONL-12
  Scenario Outline: Network management
    When terminal TERM0001 sends an 0800 with code <code>
    Then the host answers 0810 with 00

    Examples:
      | code |
      | 301  |
      | 001  |
      | 002  |

  @ONL-13
  Scenario: A format error is answered 30 and the host keeps serving
    When terminal TERM0001 sends a 0200 whose amount is "12AB00000000"
    Then the host answers 30
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy"
    Then the host answers 00

  @ONL-13
  Scenario: Bytes that are not ISO 8583 are dropped, not answered
    When terminal TERM0001 sends the bytes "GARBAGE-NOT-8583"
    Then the host drops the frame
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy"
    Then the host answers 00
