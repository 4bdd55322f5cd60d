@REV
Feature: Timeouts, reversals and duplicates at the host
  Whatever the terminal repeats, the issuer books each transaction once.

  Background:
    Given the host with the shipped test card set
    And the time is 2026-11-22 12:00:00

  @REV-01
  Scenario: A reversal releases the hold of a timed-out authorization, and its repeat books nothing
    When terminal TERM0002 sends a chip 0100 for 30.00 with card "healthy"
    Then the host answers 00
    And card "healthy" has 30.00 held and an unchanged balance
    When terminal TERM0002 reverses that sale
    Then the host answers 00
    And card "healthy" has nothing held
    When terminal TERM0002 repeats that reversal as 0401
    Then the host answers 0410 with 00
    And the account of card "healthy" is unchanged

  @REV-01
  Scenario: A reversal that arrives before its original
    When terminal TERM0002 reverses a sale of 20.00 with card "healthy" the host never saw
    Then the host answers 00
    When the lost sale finally reaches the host
    Then the host does not approve it
    And the account of card "healthy" is unchanged

  @REV-03
  Scenario: A duplicate request gets the original answer and no second debit
    When terminal TERM0002 sends a chip 0200 for 25.00 with card "healthy"
    Then the host answers 00
    When terminal TERM0002 sends the same request again
    Then the host answers 00 with the same approval code
    And the account of card "healthy" is debited 25.00

  @REV-03
  Scenario: The same key with different content is a duplicate transmission
    When terminal TERM0002 sends a chip 0200 for 25.00 with card "healthy"
    And terminal TERM0002 sends the same key again for 99.00
    Then the host answers 94
    And the account of card "healthy" is debited 25.00

  @REV-01
  Scenario: Repeated advices are booked once
    When terminal TERM0002 sends an offline advice Y1 for 12.00 with card "healthy"
    Then the host answers 0230 with 00
    When terminal TERM0002 repeats that advice as 0221
    Then the host answers 0230 with 00
    And the account of card "healthy" is debited 12.00
