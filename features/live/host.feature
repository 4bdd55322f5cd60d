@REV
Feature: The live host when connections break mid-message
  A terminal's connection can reset, or its frame stop half-way, at any byte. The host
  drops what it holds of a partial frame, books nothing for it, and keeps serving every
  other connection; the terminal's retry on a new connection is answered and booked once.

  Background:
    Given a live host on loopback

  @REV-04
  Scenario: A connection reset in the middle of a sale books nothing and others are still served
    When terminal TRST0001 sends the first 40 bytes of a chip sale of 12.00 with card "healthy" and resets the connection
    Then another terminal's echo is answered 00
    And the host booked nothing for terminal TRST0001

  @REV-04
  Scenario: A partial frame is dropped and the retry on a new connection is booked once
    When terminal TRST0002 sends the first 40 bytes of a chip sale of 7.50 with card "healthy" and goes silent
    And terminal TRST0002 sends the whole chip sale on a new connection
    Then the answer is 00
    And the host booked 7.50 once for terminal TRST0002
