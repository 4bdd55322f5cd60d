Feature: No track data, CVV or PIN block kept after authorization (SEC-03)
  Transactions read from the magnetic stripe send track 2 (DE35, with its discretionary
  data) and online PINs send a PIN block (DE52). Once answered, none of it may remain
  in what the host or the terminal keeps: the issuers' ledgers and every other object
  of the host core, the live host's state directory (SQLite, WAL included) and the live
  terminal's state directory.

  @SEC-03
  Scenario: The host core keeps no track 2 or PIN block after answering
    Given the host with the shipped test card set
    When terminal TERM0001 sends swiped 0200 sales with online PIN for cards "magstripe-only", "pin-1234" and "mc-healthy"
    And terminal TERM0001 sends a swiped 0100 authorization with online PIN for card "healthy" while its issuer is down
    Then every sale was answered
    And no track 2 with discretionary data and no PIN block remains anywhere in the host core

  @SEC-02 @SEC-03
  Scenario: The live host and the live terminal keep no track data or PIN block, and log no card number in clear
    Given a possim host process with a journal and a state directory
    And a live terminal process for that host
    When the cash register makes a sale of 12.00 with card "magstripe-only" and PIN 8080
    And the cash register makes a sale of 30.00 with card "healthy" and PIN 4315
    And the cash register makes a sale of 15.00 with card "pin-1234" and PIN 1234
    And the host and the terminal are stopped
    Then the host's journal shows a request with track 2 and one with a PIN block
    And no card number of the card set appears in the host's journal and log, the cash register's answers or the terminal's log, attempt and history records
    And the masked card number of card "healthy" appears in the host's journal
    And no track 2 with discretionary data and no PIN block remains in the host's or the terminal's state directory
    And no track 2, not even cut to PAN, separator, expiry and service code, remains in the host's state directory
