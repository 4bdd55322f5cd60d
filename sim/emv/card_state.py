"""The virtual card's state machine, as data (in the style of h11).

Two tables say everything about the card's life cycle:

* :data:`ALLOWED`: which commands a state accepts. Anything else is answered
  ``6985`` (conditions of use not satisfied) without being executed.
* :data:`TRANSITIONS`: which event moves which state where. Command handlers never
  assign a state; they report an :class:`Event` and the machine looks it up. An
  event the table does not list for the current state is a bug, raised as
  :class:`CardStateError`.

::

    POWERED_OFF --power_on--> IDLE --SELECT PSE/PPSE--> DIRECTORY
                               |  \\--SELECT AID--> SELECTED --GPO--> INITIATED
                               |                                      |  (READ RECORD, GET DATA,
                               |                                      |   VERIFY, INTERNAL AUTH)
                               |                 GENERATE AC 1 = ARQC |  GENERATE AC 1 = TC/AAC
                               |                          ONLINE <----+----> COMPLETED
                               |                            \\--GENERATE AC 2-->/
    any powered state --remove--> REMOVED --power_on--> IDLE   (re-insertion)
    any state --mute fault--> MUTE --power_on--> IDLE            (reset)

SELECT is accepted in every powered state and starts over (a new application
selection abandons the current transaction).
"""

from __future__ import annotations

from enum import Enum

from .apdu import (
    INS_GENERATE_AC,
    INS_GET_DATA,
    INS_GET_PROCESSING_OPTIONS,
    INS_GET_RESPONSE,
    INS_INTERNAL_AUTHENTICATE,
    INS_READ_RECORD,
    INS_SELECT,
    INS_VERIFY,
)

__all__ = ["ALLOWED", "COMMANDS", "CardStateError", "CardStateMachine", "Cmd", "Event", "State", "TRANSITIONS"]


class State(Enum):
    """Where the card is in its life cycle."""

    POWERED_OFF = "powered off"
    IDLE = "idle"
    DIRECTORY = "directory selected"
    SELECTED = "application selected"
    INITIATED = "transaction initiated"
    ONLINE = "waiting for second GENERATE AC"
    COMPLETED = "transaction completed"
    MUTE = "mute"
    REMOVED = "removed"

    # Members are singletons compared by identity, so identity is a valid hash: a C-level one,
    # where Enum's own hashes the name in Python on every table lookup (several per command).
    __hash__ = object.__hash__


class Cmd(str, Enum):
    """Commands the card implements; the value is the name fault targets use."""

    SELECT = "SELECT"
    READ_RECORD = "READ RECORD"
    GET_PROCESSING_OPTIONS = "GET PROCESSING OPTIONS"
    GET_DATA = "GET DATA"
    VERIFY = "VERIFY"
    INTERNAL_AUTHENTICATE = "INTERNAL AUTHENTICATE"
    GENERATE_AC = "GENERATE AC"
    GET_RESPONSE = "GET RESPONSE"


COMMANDS: dict[int, tuple[int, Cmd]] = {
    INS_SELECT: (0x00, Cmd.SELECT),
    INS_READ_RECORD: (0x00, Cmd.READ_RECORD),
    INS_GET_PROCESSING_OPTIONS: (0x80, Cmd.GET_PROCESSING_OPTIONS),
    INS_GET_DATA: (0x80, Cmd.GET_DATA),
    INS_VERIFY: (0x00, Cmd.VERIFY),
    INS_INTERNAL_AUTHENTICATE: (0x00, Cmd.INTERNAL_AUTHENTICATE),
    INS_GENERATE_AC: (0x80, Cmd.GENERATE_AC),
    INS_GET_RESPONSE: (0x00, Cmd.GET_RESPONSE),
}
"""INS -> (the CLA the command must carry, command). Another CLA is answered ``6E00``, an unknown INS ``6D00``."""


class Event(Enum):
    """What happened, as reported by power handling and command handlers."""

    POWER_ON = "power on / reset"
    REMOVE = "card removed"
    GO_MUTE = "chip went mute"
    DIRECTORY_SELECTED = "PSE or PPSE selected"
    APPLICATION_SELECTED = "application selected"
    PROCESSING_STARTED = "GET PROCESSING OPTIONS accepted"
    ARQC_RETURNED = "first GENERATE AC returned ARQC"
    TRANSACTION_DONE = "TC or AAC returned"

    __hash__ = object.__hash__  # as State's


_C = Cmd
ALLOWED: dict[State, frozenset[Cmd]] = {
    State.POWERED_OFF: frozenset(),
    State.MUTE: frozenset(),
    State.REMOVED: frozenset(),
    State.IDLE: frozenset({_C.SELECT, _C.GET_RESPONSE}),
    State.DIRECTORY: frozenset({_C.SELECT, _C.READ_RECORD, _C.GET_RESPONSE}),
    State.SELECTED: frozenset({_C.SELECT, _C.GET_PROCESSING_OPTIONS, _C.GET_DATA, _C.GET_RESPONSE}),
    State.INITIATED: frozenset({
        _C.SELECT, _C.READ_RECORD, _C.GET_DATA, _C.VERIFY, _C.INTERNAL_AUTHENTICATE, _C.GENERATE_AC, _C.GET_RESPONSE,
    }),
    State.ONLINE: frozenset({_C.SELECT, _C.GET_DATA, _C.GENERATE_AC, _C.GET_RESPONSE}),
    State.COMPLETED: frozenset({_C.SELECT, _C.READ_RECORD, _C.GET_DATA, _C.GET_RESPONSE}),
}

_POWERED = (State.IDLE, State.DIRECTORY, State.SELECTED, State.INITIATED, State.ONLINE, State.COMPLETED)
_EVERY_POWERED_STATE = {
    Event.POWER_ON: State.IDLE,
    Event.REMOVE: State.REMOVED,
    Event.GO_MUTE: State.MUTE,
    Event.DIRECTORY_SELECTED: State.DIRECTORY,
    Event.APPLICATION_SELECTED: State.SELECTED,
}
_UNPOWERED = {Event.POWER_ON: State.IDLE, Event.REMOVE: State.REMOVED, Event.GO_MUTE: State.MUTE}

TRANSITIONS: dict[State, dict[Event, State]] = {
    State.POWERED_OFF: dict(_UNPOWERED),
    State.MUTE: dict(_UNPOWERED),
    State.REMOVED: dict(_UNPOWERED),
    State.IDLE: dict(_EVERY_POWERED_STATE),
    State.DIRECTORY: dict(_EVERY_POWERED_STATE),
    State.SELECTED: {**_EVERY_POWERED_STATE, Event.PROCESSING_STARTED: State.INITIATED},
    State.INITIATED: {
        **_EVERY_POWERED_STATE,
        Event.ARQC_RETURNED: State.ONLINE,
        Event.TRANSACTION_DONE: State.COMPLETED,
    },
    State.ONLINE: {**_EVERY_POWERED_STATE, Event.TRANSACTION_DONE: State.COMPLETED},
    State.COMPLETED: dict(_EVERY_POWERED_STATE),
}


class CardStateError(RuntimeError):
    """An event the transition table does not allow in the current state: a bug in the card, not a card error."""


class CardStateMachine:
    """The current state and the two tables; the only place a card state changes."""

    def __init__(self) -> None:
        self._enter(State.POWERED_OFF)

    def _enter(self, state: State) -> None:
        # The current state's rows of both tables, looked up once per change of state
        # rather than once per command.
        self.state = state
        self._allowed = ALLOWED[state]
        self._transitions = TRANSITIONS[state]

    @property
    def powered(self) -> bool:
        """True in the states where the chip answers commands."""
        return self.state in _POWERED

    def allowed(self, cmd: Cmd) -> bool:
        """True when ``cmd`` may run in the current state."""
        return cmd in self._allowed

    def advance(self, event: Event) -> State:
        """Apply ``event``; returns the new state."""
        try:
            state = self._transitions[event]
        except KeyError:
            raise CardStateError(f"event {event.name} is not allowed in state {self.state.name}") from None
        self._enter(state)
        return state
