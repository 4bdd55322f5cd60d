Feature: Message authentication on a MAC-ing dialect (SEC-01)
  On a dialect that MACs (here the built-in "iso8583-1987-ascii-mac", DE64), every
  message carries an ISO 9797-1 algorithm 3 retail MAC over its encoded bytes under the
  terminal's MAC key (the TEST ONLY key unless the host is given one for the terminal).
  The host checks it before anything else: a missing or wrong MAC is a security
  violation, answered 63 and never booked. Its answers carry its own MAC.

  Background:
    Given the host with the shipped test card set speaking "iso8583-1987-ascii-mac"

  @SEC-01
  Scenario: A correctly MAC'd sale is approved and the answer carries a MAC that verifies
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy" MAC'd with the test key
    Then the answer is 00
    And the answer's MAC verifies under the test key
    And card "healthy" is debited 25.00

  @SEC-01
  Scenario: A sale whose amount was changed after the MAC was computed is refused 63 and not booked
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy" MAC'd with the test key, then DE4 changed to 2500.00
    Then the answer is 63
    And the answer's MAC verifies under the test key
    And card "healthy" is not debited
    And the host logged a security violation "MAC does not verify" for terminal TERM0001

  @SEC-01
  Scenario: A sale without a MAC is refused 63 and not booked
    When terminal TERM0001 sends a chip 0200 for 25.00 with card "healthy" without a MAC
    Then the answer is 63
    And card "healthy" is not debited
    And the host logged a security violation "MAC field missing" for terminal TERM0001

  @SEC-01
  Scenario: A terminal with its own key is refused when it MACs with another
    Given the host holds the MAC key 0123456789ABCDEFFEDCBA9876543210 for terminal TERM0002
    When terminal TERM0002 sends a chip 0200 for 25.00 with card "healthy" MAC'd with the test key
    Then the answer is 63
    And the answer's MAC verifies under the key 0123456789ABCDEFFEDCBA9876543210
    And card "healthy" is not debited
    When terminal TERM0002 sends a chip 0200 for 25.00 with card "healthy" MAC'd with the key 0123456789ABCDEFFEDCBA9876543210
    Then the answer is 00
    And card "healthy" is debited 25.00

  @SEC-01
  Scenario: An offline advice with a wrong MAC is refused 63 and not booked
    When terminal TERM0001 sends a 0220 advice of 12.00 approved offline with card "healthy" with a wrong MAC
    Then the answer is 63
    And card "healthy" is not debited
    When terminal TERM0001 sends the same advice again MAC'd with the test key
    Then the answer is 00
    And card "healthy" is debited 12.00

  @SEC-01
  Scenario: The live host over TCP approves a MAC'd sale, refuses a tampered one 63 and signs both answers
    Given a possim host process speaking that dialect
    When terminal TERM0001 sends over TCP a chip 0200 for 25.00 with card "healthy" MAC'd with the test key
    Then the answer is 00
    And the answer's MAC verifies under the test key
    And the live host shows card "healthy" debited 25.00
    When terminal TERM0001 sends over TCP a chip 0200 for 25.00 with card "healthy" MAC'd with the test key, then DE4 changed to 2500.00
    Then the answer is 63
    And the answer's MAC verifies under the test key
    And the live host shows card "healthy" not debited
