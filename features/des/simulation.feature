Feature: The simulated estate under scheduled faults
  Every transaction is decided by the real terminal kernel, virtual card and host core;
  the simulation supplies time, links, faults and the durable store. At the end the
  history checker compares what the terminals saw with what the issuers booked.

  Background:
    Given an estate of 3 "countertop-ethernet" and 3 "mobile-3g" terminals trading for 2 hours

  @OFF-02 @OFF-05
  Scenario: An acquirer outage turns online approvals into offline decisions and the backlog drains after it
    Given the acquirer refuses connections from hour 0.5 for 1 hour
    When the day is simulated
    Then no transaction is approved online between hour 0.51 and hour 1.5
    And some transactions are decided "Y3" or "Z3" between hour 0.51 and hour 1.5
    And every offline approval is forwarded and acknowledged
    And the store-and-forward backlog is empty at the end
    And the reconciliation verdict is OK

  @OFF-06 @DEV-04
  Scenario: Power cuts while approvals wait offline lose none of them
    Given the local network is down from hour 0.2 for 1.3 hours
    And the power fails 4 times per terminal-hour from hour 0.1 for 1.6 hours
    When the day is simulated
    Then some power cuts happened while offline approvals were in the store
    And every offline approval is forwarded and acknowledged
    And the reconciliation verdict is OK

  @OFF-07
  Scenario: A full offline store stops offline approvals and drops none
    Given the local network is down from hour 0.25 for 1.25 hours
    And the offline store is full on half of the terminals from hour 0.5 for 1 hour
    When the day is simulated
    Then the terminals whose store is full approve nothing offline between hour 0.5 and hour 1.5
    And every offline approval is forwarded and acknowledged
    And the reconciliation verdict is OK

  @DEV-03 @REV-01
  Scenario: 3G interference: timed-out requests are reversed and nothing is lost
    Given an estate of 6 "mobile-3g" and 0 "countertop-ethernet" terminals trading for 2 hours
    And loss bursts hit every link from hour 0.2 for 1.3 hours
    When the day is simulated
    Then some online requests timed out
    And every reversal is acknowledged
    And the reconciliation verdict is OK

  @STIP-01
  Scenario: An issuer goes down: the scheme stands in and the issuer books the stand-in advices
    Given the issuer "possim-visa-test" is down from hour 0.3 for 0.7 hours
    When the day is simulated
    Then some transactions are approved by stand-in
    And the reconciliation verdict is OK
