@DEV
Feature: Terminal hardware faults seen by one kernel transaction
  Readers, printer and link as the hardware profile describes them, broken the way the
  field breaks them. Longer fault schedules (3G interference over a day, a battery running
  flat) belong to the simulated estate; here one transaction shows the rule it must keep.

  Background:
    Given the time is 2026-03-15 10:30:00
    And the host is up

  @DEV-01
  Scenario: The contact reader is broken: the chip card is read by its stripe and goes online
    Given a "countertop-ethernet" terminal
    And the contact reader is broken
    And card "healthy"
    When the cardholder pays 75.00 EUR by swiping the card
    Then the terminal first asked to "tap or swipe card"
    And DE22 is "901"
    And the card gave no cryptogram
    And the terminal sent 0200
    And the transaction is approved
    And the account of card "healthy" is debited 75.00 EUR

  @DEV-01
  Scenario: Every reader of a terminal without a keypad is broken: ended with a clear status, no charge
    Given a "mobile-3g" terminal
    And every card reader is broken
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is terminated
    And the reason says "no card reader"
    And no card was read
    And the terminal sent nothing to the host
    And the terminal owes nothing
    And the account of card "healthy" is unchanged

  @DEV-01
  Scenario: Every reader is broken on a terminal that allows keyed entry: the card number is keyed
    Given a "countertop-ethernet" terminal
    And every card reader is broken
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the terminal first asked to "key card number"
    And DE22 is "011"
    And the request carries the keyed PAN and expiry and no track data
    And the transaction is approved

  @DEV-02
  Scenario: The printer is out of paper: the transaction completes, the receipt is marked not printed
    Given a "mobile-3g" terminal
    And the printer is out of paper
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is approved
    And 8A is "00"
    And the card gave a TC
    And the terminal sent 0200
    And the terminal owes nothing
    And the receipt is "not printed: out of paper"
    And the account of card "healthy" is debited 75.00 EUR

  @DEV-02
  Scenario: The last receipt of the roll still prints
    Given a "mobile-3g" terminal
    And the printer has paper for 1 receipts
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is approved
    And the receipt is "printed"

  @DEV-02
  Scenario: A reader without a printer approves and says no receipt was printed
    Given a "unattended-contactless" terminal
    And card "healthy"
    When the cardholder pays 30.00 EUR by tapping the card
    Then the transaction is approved
    And DE22 is "072"
    And the receipt is "not printed: no printer"

  @DEV-03
  Scenario: On 3G the host's approval is lost on the way back: Z3, and the approval is reversed
    Given a "mobile-3g" terminal
    And the host's answers are lost on the way back
    And card "healthy"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the terminal sent 0200
    And the transaction is declined
    And 8A is "Z3"
    And the card gave an AAC
    And the terminal owes 0400
    And the terminal owes a reversal of the 0200 for 75.00 EUR
    And the account of card "healthy" is debited 75.00 EUR
    When the terminal delivers what it owes
    Then the host acknowledged the reversal
    And the account of card "healthy" is unchanged

  @DEV-03
  Scenario: On 3G a lost answer with an offline-friendly card: Y3, the request reversed, the approval advised
    Given a "mobile-3g" terminal
    And the host's answers are lost on the way back
    And card "offline-only-iac"
    When the cardholder pays 75.00 EUR by inserting the card
    Then the transaction is approved
    And 8A is "Y3"
    And the terminal owes 0400, 0220
    And the account of card "offline-only-iac" is debited 75.00 EUR
    When the terminal delivers what it owes
    Then the host acknowledged the reversal and the advice
    And the account of card "offline-only-iac" is debited 75.00 EUR
