@SET
Feature: Settlement and reconciliation
  At the end of the day the terminal's totals per currency must match the host's.

  Background:
    Given the host with the shipped test card set
    And the time is 2026-11-22 15:00:00

  @SET-01
  Scenario: Matching totals reconcile
    When terminal TERM0003 sends a chip 0200 for 25.00 with card "healthy"
    And terminal TERM0003 sends a chip 0200 for 10.00 with card "healthy"
    And terminal TERM0003 sends a keyed refund for 5.00 with card "healthy"
    And terminal TERM0003 reconciles EUR with 1 credits for 5.00 and 2 debits for 35.00
    Then the host answers 0510 with 00

  @SET-01
  Scenario: A mismatch is answered 95 and the batch upload closes it
    When terminal TERM0003 sends a chip 0200 for 25.00 with card "healthy"
    And terminal TERM0003 sends an offline advice Y1 for 8.00 with card "healthy" that the host never receives
    And terminal TERM0003 reconciles EUR with 0 credits for 0.00 and 2 debits for 33.00
    Then the host answers 0510 with 95
    When terminal TERM0003 uploads its batch
    Then the upload adds 1 transaction and closes the batch
    And the account of card "healthy" is debited 33.00

  @SET-01
  Scenario: A mismatch is settled by a batch upload over the wire
    When terminal TERM0004 sends a chip 0200 for 25.00 with card "healthy"
    And terminal TERM0004 sends an offline advice Y1 for 8.00 with card "healthy" that the host never receives
    And terminal TERM0004 reconciles EUR with 0 credits for 0.00 and 2 debits for 33.00
    Then the host answers 0510 with 95
    When terminal TERM0004 uploads its batch as 0320 messages
    Then the host answers each of them 0330 with 00
    When terminal TERM0004 repeats its upload as 0321 messages
    Then the host answers each of them 0330 with 00
    When terminal TERM0004 settles EUR after the upload with 0 credits for 0.00 and 2 debits for 33.00
    Then the host answers 0510 with 00
    And the batches of TERM0004 in EUR are settled as uploaded
    And the account of card "healthy" is debited 33.00

  @SET-01
  Scenario: Totals that still differ after the upload are answered 95 again
    When terminal TERM0004 sends a chip 0200 for 25.00 with card "healthy"
    And terminal TERM0004 reconciles EUR with 0 credits for 0.00 and 2 debits for 33.00
    Then the host answers 0510 with 95
    When terminal TERM0004 uploads its batch as 0320 messages
    And terminal TERM0004 settles EUR after the upload with 0 credits for 0.00 and 2 debits for 33.00
    Then the host answers 0510 with 95

  @SET-02
  Scenario: An offline approval forwarded after the cut-off lands in the next batch, once
    Given the host's cut-off is 16:00
    When terminal TERM0003 sends a chip 0200 for 25.00 with card "healthy"
    And the time is 2026-11-22 16:30:00
    And terminal TERM0003 sends an offline advice Y1 for 7.00 with card "healthy"
    And terminal TERM0003 repeats that advice as 0221
    Then the batch of 2026-11-22 for TERM0003 holds 1 debits for 25.00 EUR
    And the batch of 2026-11-23 for TERM0003 holds 1 debits for 7.00 EUR
