@ONL
Feature: Online authorization decided through the terminal kernel
  The kernel reads a virtual card of the shipped test card set, decides by the EMV rules
  (EMV 4.4 Book 3 section 10) to ask the card for an ARQC, sends the ISO 8583 request to
  the in-process host core and completes with the card's second GENERATE AC. Card data
  used below (sim/data/cards.toml): "healthy" has AIP 1800 (no offline data
  authentication), CVM list online PIN / signature / no CVM, IAC-Online DC4004F800.
  The countertop-ethernet profile has floor limits of 50.00 EUR/USD, 5000 JPY, 5.000 KWD,
  TAC-Denial 1010000000, TAC-Online DC4004F800.

  Background:
    Given the time is 2026-03-15 10:30:00
    And the host is up

  @ONL-01
  Scenario: A chip sale above the floor limit is approved online with an ARPC and a TC
    Given a "countertop-ethernet" terminal
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is approved
    And 8A is "00"
    And the card gave a TC
    And DE22 is "051"
    And TVR 4:80 transaction_exceeds_floor_limit is set
    And TVR 3:04 online_pin_entered is set
    And the terminal sent 0200
    And the request's DE55 holds 9F26 9F27 9F10 9F37 9F36 95 9A 9C 9F02 5F2A 82 9F1A
    And the request's 9F27 is 80
    And the request's 9F02 is 000000007500
    And the request's 5F2A is 0978
    And the request's 9A is 260315
    And the request's 9C is 00
    And the request's 82 is 1800
    And the request's 9F1A is 0250
    And the request carries a PIN block in DE52
    And the host's answer carries an ARPC in tag 91
    And the request's ARQC verifies with the card's key
    And the issuer authentication passed
    And TSI 1:40 cardholder_verification_performed is set
    And TSI 1:08 terminal_risk_management_performed is set
    And the terminal owes nothing
    And the account of card "healthy" is debited 75.00 EUR

  @ONL-01
  Scenario: A dual-message terminal sends an 0100 and owes the completion advice
    Given a "legacy-dialup" terminal
    And card "healthy"
    When the cardholder pays 200.00 EUR by inserting the card
    Then the transaction is approved
    And 8A is "00"
    And the card gave a TC
    And the terminal sent 0100
    And the CVM results are "1E0300"
    And a signature is required
    And the terminal owes 0220
    And the account of card "healthy" has 200.00 EUR held and an unchanged balance
    When the terminal delivers what it owes
    Then the host acknowledged the completion
    And the account of card "healthy" is debited 200.00 EUR

  @ONL-02
  Scenario: Insufficient funds: the host says 51, the card gives an AAC
    Given a "countertop-ethernet" terminal
    And card "insufficient-funds"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is declined
    And 8A is "51"
    And the card gave an AAC
    And the terminal sent 0200
    And the terminal owes nothing
    And the account of card "insufficient-funds" is unchanged

  @ONL-03
  Scenario: Expired card: the terminal sets 2:40 and the host says 54
    Given a "countertop-ethernet" terminal
    And card "expired"
    When the cardholder pays 75.00 EUR by inserting the card
    Then TVR 2:40 expired_application is set
    And the terminal sent 0200
    And the TVR sent in the request (95) has 2:40 set
    And the transaction is declined
    And 8A is "54"
    And the card gave an AAC
    And the account of card "expired" is unchanged

  @ONL-04
  Scenario Outline: Cards on the issuer's hotlist are declined by the host
    Given a "countertop-ethernet" terminal
    And card "<card>"
    When the cardholder pays 75.00 <currency> by inserting the card
    Then the terminal sent 0200
    And the transaction is declined
    And 8A is "<code>"
    And the card gave an AAC
    And the account of card "<card>" is unchanged

    Examples:
      | card   | currency | code |
      | lost   | EUR      | 41   |
      | stolen | USD      | 43   |

  @ONL-04
  Scenario: A card on the terminal exception file is declined without going online (TAC-Denial 1:10)
    Given a "countertop-ethernet" terminal
    And the terminal's exception file lists card "healthy"
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then TVR 1:10 card_on_exception_file is set
    And the transaction is declined
    And 8A is "Z1"
    And the card gave an AAC
    And the terminal sent nothing to the host
    And the terminal owes nothing
    And the account of card "healthy" is unchanged

  @ONL-04
  Scenario: When TAC-Denial does not name 1:10 the exception file sends the card online
    Given a "countertop-ethernet" terminal
    And the terminal's TAC-Denial is 0010000000
    And the terminal's exception file lists card "healthy"
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then TVR 1:10 card_on_exception_file is set
    And the terminal sent 0200
    And the transaction is approved
    And 8A is "00"

  @ONL-05
  Scenario: Wrong online PINs through the kernel: 55, 55, then 75
    Given a "countertop-ethernet" terminal
    And card "healthy"
    When the cardholder pays 10.00 EUR by inserting the card with PIN 0000
    Then the PIN pad asked for online PIN
    And the request carries a PIN block in DE52
    And TVR 3:04 online_pin_entered is set
    And the transaction is declined
    And 8A is "55"
    And the card gave an AAC
    When the cardholder pays 10.00 EUR by inserting the card with PIN 1111
    Then 8A is "55"
    When the cardholder pays 10.00 EUR by inserting the card with PIN 2222
    Then the transaction is declined
    And 8A is "75"
    And the card gave an AAC
    And the account of card "healthy" is unchanged

  @ONL-05
  Scenario: The right online PIN is approved
    Given a "countertop-ethernet" terminal
    And card "healthy"
    When the cardholder pays 10.00 EUR by inserting the card with PIN 4315
    Then the transaction is approved
    And 8A is "00"
    And the CVM results are "420300"

  @ONL-07
  Scenario: The ARPC does not verify at the card: 5:40, AAC after the host approved, reversal owed
    Given a "countertop-ethernet" terminal
    And the link corrupts the ARPC in the host's answer
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then TVR 5:40 issuer_authentication_failed is set
    And the issuer authentication failed
    And the transaction is declined
    And 8A is "00"
    And the card gave an AAC
    And the terminal sent 0200
    And the terminal owes 0400
    And the terminal owes a reversal of the 0200 for 75.00 EUR
    And the account of card "healthy" is debited 75.00 EUR
    When the terminal delivers what it owes
    Then the host acknowledged the reversal
    And the account of card "healthy" is unchanged

  @ONL-10
  Scenario Outline: Amounts travel in minor units of the currency's exponent
    Given a "countertop-ethernet" terminal
    And card "<card>"
    When the cardholder pays <amount> <currency> by inserting the card
    Then the transaction is approved
    And the request's DE4 is <de4>
    And the request's DE49 is <de49>
    And the request's 9F02 is <de4>
    And the request's 5F2A is 0<de49>
    And the account of card "<card>" is debited <amount> <currency>

    Examples:
      | card        | amount | currency | de4          | de49 |
      | jpy-healthy | 12000  | JPY      | 000000012000 | 392  |
      | kwd-healthy | 7.500  | KWD      | 000000007500 | 414  |
      | healthy     | 75.00  | EUR      | 000000007500 | 978  |
      | mc-healthy  | 75.00  | USD      | 000000007500 | 840  |
