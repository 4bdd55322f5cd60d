@STIP
Feature: Stand-in when the issuer is down
  The scheme approves small amounts in the issuer's place, refuses the rest with 91,
  and delivers its advices once the issuer is back.

  Background:
    Given the host with the shipped test card set
    And the time is 2026-11-22 18:00:00

  @STIP-01
  Scenario: Stand-in approves below its limit and declines above it
    Given the issuer of card "healthy" is down
    When terminal TERM0004 sends a chip 0200 for 20.00 with card "healthy"
    Then the host answers 00
    And the approval is flagged as stand-in
    When terminal TERM0004 sends a chip 0200 for 75.00 with card "healthy"
    Then the host answers 91
    And the account of card "healthy" is unchanged

  @STIP-01
  Scenario: Stand-in advices reach the issuer once when it returns
    Given the issuer of card "healthy" is down
    When terminal TERM0004 sends a chip 0200 for 20.00 with card "healthy"
    And terminal TERM0004 sends a chip 0200 for 30.00 with card "healthy"
    Then the account of card "healthy" is unchanged
    When the issuer of card "healthy" comes back
    Then the account of card "healthy" is debited 50.00
    When the issuer of card "healthy" goes down and comes back again
    Then the account of card "healthy" is debited 50.00
