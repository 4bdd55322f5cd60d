Feature: The live terminal keeps every offline approval and reversal through outages and power cuts
  A live terminal process (possim terminal --serve) is driven over its ECR port by a
  cash register, against a possim host process, on loopback. What it approved while
  the host was away, and what it must reverse, reaches the host exactly once, even
  when the terminal is killed (kill -9) and restarted on the same state directory.

  @OFF-05
  Scenario: Offline approvals made during an outage are all delivered once the host returns
    Given a possim host process
    And the host is down
    And a live terminal process for that host
    When the cash register makes 3 sales of 1.50 with card "offline-only-iac"
    Then each sale is approved offline and stored as a 0220
    When the host comes back
    And the terminal has delivered everything it owes
    Then the host booked each approved sale exactly once
    And the history checker finds nothing lost or duplicated

  @OFF-06 @DEV-04
  Scenario: Power lost after offline approvals: after restart every approval is still there, none booked twice
    Given a possim host process
    And the host is down
    And a live terminal process for that host
    When the cash register makes 2 sales of 2.00 with card "offline-only-iac"
    And the terminal loses power
    And the terminal is started again on the same state
    And the host comes back
    And the terminal has delivered everything it owes
    Then the host booked each approved sale exactly once
    And the history checker finds nothing lost or duplicated

  @REV-01
  Scenario: Power lost with a request out: the reversal goes after restart and the hold is released
    Given a possim host process that answers 0200 after 3 seconds
    And a live terminal process for that host
    When the cash register starts a sale of 42.00 with card "healthy" and the terminal loses power while it waits
    And the terminal is started again on the same state
    And the terminal has delivered everything it owes
    Then the funds of card "healthy" are available again
    And the history checker finds nothing lost or duplicated

  @REV-02
  Scenario: The host's answer comes after the terminal's timeout: reversed, and the late answer changes nothing
    Given a possim host process that answers 0200 after 3 seconds
    And a live terminal process for that host
    When the cash register makes 1 sale of 60.00 with card "online-only-iac"
    Then the sale is not approved and a 0400 reversal is owed for it
    When the terminal has delivered everything it owes
    And the late answer has arrived
    Then the terminal ignored the late answer
    And the funds of card "online-only-iac" are available again
    And the history checker finds nothing lost or duplicated
