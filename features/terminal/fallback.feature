@FB
Feature: Card faults and fallback in the terminal kernel
  A chip that cannot be used before an application is selected sends the terminal to the
  stripe (technical fallback, DE22 80x); an unreadable stripe after that to keyed entry
  (79x) when the profile allows it. Card errors after selection end the transaction
  without a decision. Cards from sim/data/cards.toml, faults as the card set declares them
  or as the scenario adds them (sim/emv/faults.py). countertop-ethernet allows manual
  entry; mobile-3g does not.

  Background:
    Given the time is 2026-03-15 10:30:00
    And the host is up

  @FB-01
  Scenario: A mute chip falls back to the stripe (801) and goes online
    Given a "countertop-ethernet" terminal
    And card "chip-mute"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the terminal then asked for the magstripe only, saying "chip read failed (chip mute)"
    And DE22 is "801"
    And the card gave no cryptogram
    And the terminal sent 0200
    And the request carries track 2 in DE35 and no chip data
    And the request's DE22 is 801
    And the transaction is approved
    And 8A is "00"

  @FB-01
  Scenario: A bad ATR falls back to the stripe
    Given a "countertop-ethernet" terminal
    And card "healthy"
    And its ATR fails with bad_atr
    When the cardholder pays 75.00 EUR by inserting the card
    Then the terminal then asked for the magstripe only, saying "chip read failed (bad ATR)"
    And DE22 is "801"
    And the transaction is approved

  @FB-01
  Scenario: No application in common falls back to the stripe
    Given a "countertop-ethernet" terminal
    And the terminal supports only the application A0000000041010
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the terminal then asked for the magstripe only, saying "no common application"
    And DE22 is "801"
    And the card gave no cryptogram
    And the transaction is approved

  @FB-01
  Scenario: A fallback transaction is never approved offline
    Given a "countertop-ethernet" terminal
    And the host is unreachable
    And card "chip-mute"
    When the cardholder pays 10.00 EUR by inserting the card
    Then DE22 is "801"
    And the transaction is declined
    And the reason says "host unreachable"
    And the terminal owes nothing

  @FB-02
  Scenario: Chip and stripe both fail: keyed entry (791) where the profile allows it
    Given a "countertop-ethernet" terminal
    And card "magstripe-damaged"
    And its ATR fails with mute
    When the cardholder pays 75.00 EUR by inserting the card
    Then the terminal then asked for the magstripe only, saying "chip read failed"
    And DE22 is "791"
    And the request carries the keyed PAN and expiry and no track data
    And the request's DE14 is 2812
    And the transaction is approved
    And the account of card "magstripe-damaged" is debited 75.00 EUR

  @FB-02
  Scenario: Chip and stripe both fail on a terminal without manual entry: declined
    Given a "mobile-3g" terminal
    And card "magstripe-damaged"
    And its ATR fails with mute
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is declined
    And the reason says "manual entry not allowed"
    And the terminal sent nothing to the host
    And the account of card "magstripe-damaged" is unchanged

  @FB-03
  Scenario: A chip card swiped first (service code 2xx) is sent to the chip
    Given a "countertop-ethernet" terminal
    And card "chip-swiped-first"
    When the cardholder pays 75.00 EUR by swiping, then inserting the card
    Then the terminal then asked for the contact only, saying "chip card: insert the chip"
    And DE22 is "051"
    And the card gave a TC
    And the transaction is approved

  @FB-04
  Scenario: Card removed during the second GENERATE AC after the host approved: reversal
    Given a "countertop-ethernet" terminal
    And card "healthy"
    And its GENERATE AC 2 fails with remove
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is terminated
    And the reason says "card removed during second GENERATE AC"
    And 8A is "00"
    And the terminal sent 0200
    And the terminal owes 0400
    And the terminal owes a reversal of the 0200 for 75.00 EUR
    When the terminal delivers what it owes
    Then the host acknowledged the reversal
    And the account of card "healthy" is unchanged

  @FB-04
  Scenario: Card removed during the first GENERATE AC: nothing sent, nothing owed
    Given a "countertop-ethernet" terminal
    And card "healthy"
    And its GENERATE AC 1 fails with remove
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is terminated
    And there is no authorisation response code
    And the terminal sent nothing to the host
    And the terminal owes nothing

  @FB-05
  Scenario: Malformed TLV in the card's records terminates as a card error
    Given a "countertop-ethernet" terminal
    And card "chip-bad-tlv"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is terminated
    And the reason says "card error"
    And there is no authorisation response code
    And the terminal sent nothing to the host
    And the terminal owes nothing

  @FB-05
  Scenario Outline: Truncated answers and missing mandatory tags terminate as card errors
    Given a "countertop-ethernet" terminal
    And card "healthy"
    And its <target> fails with <effect>
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is terminated
    And the reason says "<words>"
    And the terminal sent nothing to the host
    And the terminal owes nothing

    Examples:
      | target      | effect        | words                                 |
      | READ RECORD | drop_tag(5A)   | card error: mandatory data missing (5A)   |
      | READ RECORD | drop_tag(5F24) | card error: mandatory data missing (5F24) |
      | READ RECORD | drop_tag(8C)   | card error: mandatory data missing (8C)   |
      | READ RECORD | drop_tag(8D)   | card error: mandatory data missing (8D)   |
      | READ RECORD | truncate       | card error                                |
      | GENERATE AC | corrupt_tlv    | card error: GENERATE AC answer malformed  |

  @FB-06
  Scenario: The card's PIN try counter is 0: offline PIN fails with 3:20, online PIN follows
    Given a "countertop-ethernet" terminal
    And card "pin-1234"
    And its PIN try counter (9F17) is 0
    When the cardholder pays 75.00 EUR by inserting the card
    Then TVR 3:20 pin_try_limit_exceeded is set
    And TVR 3:80 cardholder_verification_failed is not set
    And the PIN pad asked for online PIN
    And the CVM results are "420300"
    And the transaction is approved

  @FB-06
  Scenario: Three wrong offline PINs exhaust the card's try counter
    Given a "countertop-ethernet" terminal
    And card "pin-1234"
    When the cardholder pays 75.00 EUR by inserting the card typing the PINs 0000, 1111, 2222
    Then the PIN pad asked for offline PIN (3 tries left), offline PIN (2 tries left), offline PIN (1 tries left), online PIN
    And the card's PIN try counter is 0
    And TVR 3:20 pin_try_limit_exceeded is set
    And the CVM results are "420300"

  @FB-07
  Scenario: A tap above the contactless limit is sent to the contact reader
    Given a "countertop-ethernet" terminal
    And card "healthy"
    When the cardholder pays 150.00 EUR by tapping, then inserting the card
    Then the terminal first asked to "insert or swipe card"
    And the terminal then said "amount over the contactless limit: insert card"
    And DE22 is "051"
    And the card gave a TC
    And the transaction is approved

  @FB-07
  Scenario: A contactless-only reader declines above its contactless limit
    Given a "unattended-contactless" terminal
    And card "healthy"
    When the cardholder pays 60.00 EUR by tapping the card
    Then the transaction is declined
    And the reason says "contactless limit"
    And no card was read
    And the terminal sent nothing to the host
