Feature: Card numbers are masked in every log, journal and report (SEC-02)
  Each producer of human-readable output is run for real on traffic carrying every
  card of the shipped test card set (DE2, DE35 track 2, DE55 with tags 5A and 57),
  and its whole output is searched for each card number in clear (as digits, and as
  the hex of their characters): none may be there. Where the producer shows the card
  at all, the masked form (first 6, last 4) is there instead.

  Background:
    Given a day of traffic carrying every card of the shipped test card set

  @SEC-02
  Scenario: The pretty printer and the one-line summary
    When every message of the day is pretty-printed and summarised
    Then no card number of the card set appears in the output
    And the masked card number of every card appears in the output

  @SEC-02
  Scenario: possim pcap dissect, as tables and as JSON
    Given the day's messages written to a pcap with possim pcap write
    When the pcap is dissected with possim pcap dissect
    And the pcap is dissected with possim pcap dissect --json
    Then no card number of the card set appears in the output
    And the masked card number of every card appears in the output

  @SEC-02
  Scenario: The host's settlement report (CSV) and decision log
    When the day's sales are answered by the host core and its settlement report is written
    Then no card number of the card set appears in the output
    And the masked card number of every card appears in the output

  @SEC-02
  Scenario: The history checker's report, as text and as JSON
    When the history checker reports lost, duplicated, unexpected, mismatched and resolved attempts on every card
    Then no card number of the card set appears in the output
    And the masked card number of every card appears in the output

  @SEC-02
  Scenario: The simulation's JSON report and summary
    When a tiny estate is simulated with possim simulate and its JSON report written
    Then no card number of the card set or of the simulated cardholders appears in the output

  @SEC-02
  Scenario: The simulation's report lists reconciliation findings with masked card numbers
    When a tiny estate is simulated and its report is built against a ledger that booked nothing
    Then the report lists lost transactions
    And no card number of the card set or of the simulated cardholders appears in the output
    And the masked card number of every simulated cardholder in the findings appears in the output
