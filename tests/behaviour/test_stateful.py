"""Banner actors of the embedded runtime against a reference model, driven by a Hypothesis state machine.

Each example starts an in-process EmbeddedRuntime on a fresh SQLite file under tmp_path and runs up to STEPS
random rules over a small pool of banner ids: register, submit (valid and invalid text, with and without
Idempotency-Key and If-Match), a second submit while a message shows, clear, time passing, expire, delete,
restart (stop the runtime, start a new one on the same file) and restart after downtime (the clock moves
while the runtime is stopped, so expiries are overdue when it starts). After every step the model and the
runtime must agree on each banner: registered or not, version, display version and the message (id, text,
shown and expiry time); versions never go down within a banner's life; every change produces exactly one
event, one version up; and the store's listing names the same banners.

Clock: the runtime runs on a fake clock (EmbeddedRuntime's `clock`), which only moves in the time rules, in
whole milliseconds, and a message shows for 55.5 ms, so no step lands on an expiry boundary. The reminder
scheduler waits in real seconds for (due - clock()), at most 55.5 ms here, so once the fake clock passes an
expiry the reminder fires within that time; the test waits for its `message_expired` event, never sleeps.

Size: EXAMPLES (50) examples of up to STEPS (30) steps; with the locked Hypothesis ~60 machine runs, ~1,100
checked steps, ~40 expiries (half of them after downtime), ~220 restarts; about 5 s here. The test also
asserts that every kind of outcome (busy, replayed, key reused, expired, restarted with a message showing,
...) occurred at least once. The fake clock moves less than 4 s per example, so the 24 h Idempotency-Key
window never closes.

Determinism: `derandomize=True` seeds Hypothesis from the test itself, so CI runs the same examples every
time (a failure reproduces from the log, no flakes from new random draws), and `database=None` keeps
runs independent of a local `.hypothesis/` example store. The price is less exploration per run; change
the test or the settings locally to explore more.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from airdisplay.domain import (
    Banner,
    BannerAlreadyExists,
    BannerBusy,
    BannerChanged,
    BannerNotFound,
    BannerRules,
    ChangeKind,
    IdempotencyKeyReused,
    InvalidMessageText,
    VersionMismatch,
)
from airdisplay.runtimes import EmbeddedRuntime
from tests.conftest import eventually

#: Outcomes every run must reach at least once, or the test has stopped testing what it says.
REQUIRED_OUTCOMES = {
    "registered",
    "already registered",
    "shown",
    "invalid text",
    "replayed",
    "key reused",
    "version mismatch",
    "busy",
    "not found",
    "cleared",
    "expired",
    "deleted",
    "restarted with a message showing",
    "expired after downtime",
}

EXAMPLES = 50
STEPS = 30
#: A message shows for 55.5 ms of fake time; the clock moves in whole milliseconds (see the docstring).
DISPLAY_SECONDS = 0.0555
MAX_TEXT = 64
BANNER_IDS = ("b0", "b1")
IDEMPOTENCY_KEYS = (None, "k1", "k2")
#: 2025-06-15 UTC, a plausible wall-clock time; the fake clock starts here.
CLOCK_START_MS = 1_750_000_000_000
#: A due reminder fires within DISPLAY_SECONDS of real time here; 5 s is ~100 times that, and short
#: enough that shrinking a failing example (many runs that each wait this long) fits the test timeout.
EXPIRY_WAIT_LIMIT = 5.0

#: Mostly texts a banner shows (repeats make Idempotency-Key replays likely), some it refuses, some random.
SHOWABLE = st.sampled_from(["Hello", "Happy birthday Ana!", "  padded  ", "Zürich ✈ 12:30", "x" * MAX_TEXT])
TEXTS = st.one_of(
    SHOWABLE,
    st.sampled_from(["Hello", "Marry me?"]),
    st.sampled_from(["", "   ", "x" * (MAX_TEXT + 1), "bell\x07", "line\nbreak"]),
    st.text(max_size=MAX_TEXT + 6),
)


def clocked_runtime(data_dir: Path, rules: BannerRules, clock: FakeClock) -> EmbeddedRuntime:
    """An EmbeddedRuntime whose actors and reminders run on `clock`."""
    return EmbeddedRuntime(data_dir, rules, clock=clock)


class FakeClock:
    """Unix seconds that move only when told, in whole milliseconds."""

    def __init__(self) -> None:
        self.ms = CLOCK_START_MS

    def __call__(self) -> float:
        return self.ms / 1000

    def now(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)


# -- the reference model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelMessage:
    id: str
    text: str
    shown_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ModelBanner:
    version: int = 1
    display_version: int = 1
    message: ModelMessage | None = None

    def next(self, message: ModelMessage | None) -> ModelBanner:
        """The banner after a display change: both versions up by one."""
        return ModelBanner(self.version + 1, self.display_version + 1, message)


@dataclass
class ModelLife:
    """One life of a banner id, from register to delete: its state and its Idempotency-Key results."""

    banner: ModelBanner = field(default_factory=ModelBanner)
    submissions: dict[str, tuple[str, ModelBanner]] = field(default_factory=dict)


def cleaned(raw: str) -> str | None:
    """The text a banner shows for `raw`, or None when the product refuses it."""
    text = raw.strip()
    if not text or len(regex.findall(r"\X", text)) > MAX_TEXT or not text.isprintable():
        return None
    return text


def agrees(actual: Banner, expected: ModelBanner) -> bool:
    message = actual.message
    as_model = None
    if message is not None:
        as_model = ModelMessage(message.id, message.text, message.shown_at, message.expires_at)
    return (actual.version, actual.display_version, as_model) == (
        expected.version,
        expected.display_version,
        expected.message,
    )


class BannerMachine(RuleBasedStateMachine):
    """Drives the runtime's banner actors and a dict of ModelLife side by side."""

    def __init__(self, workdir: Path, seen: Counter[str]) -> None:
        super().__init__()
        self.seen = seen  # outcomes over all examples, so the test can tell it reached each of them
        self.seen["examples"] += 1
        self.loop = asyncio.Runner()
        self.data_dir = Path(tempfile.mkdtemp(dir=workdir))
        self.rules = BannerRules(max_text_length=MAX_TEXT, display_seconds=DISPLAY_SECONDS)
        self.clock = FakeClock()
        self.model: dict[str, ModelLife] = {}
        self.message_ids: set[str] = set()
        self.events: list[BannerChanged] = []
        self.checked_events = 0
        self.event_version: dict[str, int] = {}
        self.highest_version: dict[str, int] = {}
        self.runtime = self._start_runtime()

    def _start_runtime(self) -> EmbeddedRuntime:
        runtime = clocked_runtime(self.data_dir, self.rules, self.clock)
        self.loop.run(runtime.start())
        runtime.add_listener(self.events.append)
        return runtime

    def teardown(self) -> None:
        try:
            self.loop.run(self.runtime.stop())
        finally:
            self.loop.close()

    def run(self, coroutine):
        return self.loop.run(coroutine)

    def showing(self) -> list[str]:
        return [b for b, life in self.model.items() if life.banner.message is not None]

    # -- rules -------------------------------------------------------------------------------------

    @initialize(registered=st.sets(st.sampled_from(BANNER_IDS), min_size=1), text=SHOWABLE)
    def register_some(self, registered: set[str], text: str) -> None:
        """Start with registered banners, one of them showing a message, so most steps meet live state."""
        for banner_id in sorted(registered):
            self.register(banner_id)
        self.submit(min(registered), text, None, "absent")

    @rule(banner_id=st.sampled_from(BANNER_IDS))
    def register(self, banner_id: str) -> None:
        if banner_id in self.model:
            with pytest.raises(BannerAlreadyExists):
                self.run(self.runtime.create_banner(banner_id, f"Banner {banner_id}"))
            self.seen["already registered"] += 1
            return
        registration = self.run(self.runtime.create_banner(banner_id, f"Banner {banner_id}"))
        assert registration.device_token
        self.model[banner_id] = ModelLife()
        assert agrees(registration.banner, self.model[banner_id].banner)
        self.seen["registered"] += 1

    @rule(
        banner_id=st.sampled_from(BANNER_IDS),
        raw=TEXTS,
        key=st.sampled_from(IDEMPOTENCY_KEYS),
        if_match=st.sampled_from(["absent", "current", "stale"]),
    )
    def submit(self, banner_id: str, raw: str, key: str | None, if_match: str) -> None:
        life = self.model.get(banner_id)
        version = life.banner.version if life else 1
        expected_version = {"absent": None, "current": version, "stale": version - 1}[if_match]
        call = self.runtime.submit_message(
            banner_id, raw, idempotency_key=key, expected_version=expected_version
        )
        text = cleaned(raw)
        # The reference rules, in the product's order: banner, text, Idempotency-Key, If-Match, busy.
        if life is None:
            with pytest.raises(BannerNotFound):
                self.run(call)
            self.seen["not found"] += 1
            return
        if text is None:
            with pytest.raises(InvalidMessageText):
                self.run(call)
            self.seen["invalid text"] += 1
            return
        if key is not None and key in life.submissions:
            earlier_text, earlier_result = life.submissions[key]
            if earlier_text != text:
                with pytest.raises(IdempotencyKeyReused):
                    self.run(call)
                self.seen["key reused"] += 1
                return
            outcome = self.run(call)
            assert outcome.replayed
            assert agrees(outcome.banner, earlier_result), "a replay returns the original result"
            self.seen["replayed"] += 1
            return
        if expected_version is not None and expected_version != life.banner.version:
            with pytest.raises(VersionMismatch):
                self.run(call)
            self.seen["version mismatch"] += 1
            return
        showing = life.banner.message
        if showing is not None:
            with pytest.raises(BannerBusy) as refused:
                self.run(call)
            assert refused.value.free_at == showing.expires_at
            self.seen["busy"] += 1
            return
        outcome = self.run(call)
        assert not outcome.replayed
        message = outcome.banner.message
        assert message is not None and message.id not in self.message_ids, "every message gets a new id"
        self.message_ids.add(message.id)
        shown_at = self.clock.now()
        life.banner = life.banner.next(
            ModelMessage(message.id, text, shown_at, shown_at + timedelta(seconds=DISPLAY_SECONDS))
        )
        if key is not None:
            life.submissions[key] = (text, life.banner)
        assert agrees(outcome.banner, life.banner)
        self.seen["shown"] += 1

    @precondition(lambda self: self.showing())
    @rule(data=st.data())
    def second_submit_while_showing_is_refused(self, data: st.DataObject) -> None:
        banner_id = data.draw(st.sampled_from(self.showing()))
        message = self.model[banner_id].banner.message
        assert message is not None
        with pytest.raises(BannerBusy) as refused:
            self.run(self.runtime.submit_message(banner_id, "Me too"))
        assert refused.value.free_at == message.expires_at
        self.seen["busy"] += 1

    @rule(banner_id=st.sampled_from(BANNER_IDS), text=SHOWABLE, key=st.sampled_from(IDEMPOTENCY_KEYS[1:]))
    def submit_with_a_key(self, banner_id: str, text: str, key: str) -> None:
        """The way careful clients submit: every submit carries an Idempotency-Key."""
        self.submit(banner_id, text, key, "absent")

    @precondition(lambda self: any(life.submissions for life in self.model.values()))
    @rule(data=st.data(), if_match=st.sampled_from(["absent", "current", "stale"]))
    def retry_an_acknowledged_submit(self, data: st.DataObject, if_match: str) -> None:
        """A client that lost the answer sends the same submit with the same Idempotency-Key again."""
        keyed = sorted((b, k) for b, life in self.model.items() for k in life.submissions)
        banner_id, key = data.draw(st.sampled_from(keyed))
        text, _ = self.model[banner_id].submissions[key]
        self.submit(banner_id, text, key, if_match)

    @precondition(lambda self: self.showing())
    @rule(data=st.data())
    def clear_a_showing_message(self, data: st.DataObject) -> None:
        self.clear(data.draw(st.sampled_from(self.showing())))

    @rule(banner_id=st.sampled_from(BANNER_IDS))
    def clear(self, banner_id: str) -> None:
        life = self.model.get(banner_id)
        if life is None:
            with pytest.raises(BannerNotFound):
                self.run(self.runtime.clear_message(banner_id))
            return
        banner = self.run(self.runtime.clear_message(banner_id))
        if life.banner.message is not None:  # clearing a free banner changes nothing
            life.banner = life.banner.next(None)
            self.seen["cleared"] += 1
        assert agrees(banner, life.banner)

    @rule(milliseconds=st.integers(min_value=0, max_value=120))
    def let_time_pass(self, milliseconds: int) -> None:
        self._advance_to(self.clock.ms + milliseconds)

    @precondition(lambda self: self.showing())
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        """Move the clock just past one showing message's expiry (others may expire with it)."""
        banner_id = data.draw(st.sampled_from(self.showing()))
        message = self.model[banner_id].banner.message
        assert message is not None
        past = int(message.expires_at.timestamp() * 1000) + 1
        self._advance_to(past)
        assert self.model[banner_id].banner.message is None

    @rule(banner_id=st.sampled_from(BANNER_IDS))
    def delete(self, banner_id: str) -> None:
        if banner_id not in self.model:
            with pytest.raises(BannerNotFound):
                self.run(self.runtime.delete_banner(banner_id))
            return
        self.run(self.runtime.delete_banner(banner_id))
        del self.model[banner_id]
        self.seen["deleted"] += 1
        self.highest_version.pop(banner_id, None)  # a later register starts a new life at version 1

    @rule()
    def restart(self) -> None:
        """Stop the runtime (graceful) and start a new one on the same SQLite file and clock."""
        self.seen["restarted"] += 1
        if self.showing():
            self.seen["restarted with a message showing"] += 1
        self.run(self.runtime.stop())
        self.runtime = self._start_runtime()
        for banner_id, life in self.model.items():
            assert agrees(self.run(self.runtime.get_banner(banner_id)), life.banner), "lost on restart"

    @rule(milliseconds=st.integers(min_value=0, max_value=120))
    def restart_after_downtime(self, milliseconds: int) -> None:
        """The runtime is down while time passes; expiries that fell due meanwhile fire after the start."""
        self.run(self.runtime.stop())
        self._advance_to(self.clock.ms + milliseconds, restart=True)

    def _advance_to(self, ms: int, *, restart: bool = False) -> None:
        before = len(self.events)  # an earlier life of the same id had the same versions
        self.clock.ms = ms
        now = self.clock.now()
        due = {}
        for banner_id, life in self.model.items():
            message = life.banner.message
            if message is not None and message.expires_at <= now:
                life.banner = life.banner.next(None)
                due[banner_id] = life.banner.version
        if restart:
            self.runtime = self._start_runtime()

        def expired() -> bool:
            fired = self.events[before:]
            seen = {(e.banner_id, e.version) for e in fired if e.kind is ChangeKind.MESSAGE_EXPIRED}
            return all(item in seen for item in due.items())

        what = f"expiry reminders of {sorted(due)} to fire"
        self.run(eventually(expired, limit=EXPIRY_WAIT_LIMIT, what=what))
        self.seen["expired after downtime" if restart else "expired"] += len(due)

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def runtime_agrees_with_the_model(self) -> None:
        self.seen["checks"] += 1
        for banner_id in BANNER_IDS:
            life = self.model.get(banner_id)
            if life is None:
                with pytest.raises(BannerNotFound):
                    self.run(self.runtime.get_banner(banner_id))
                continue
            banner = self.run(self.runtime.get_banner(banner_id))
            assert agrees(banner, life.banner), f"{banner_id}: runtime {banner!r} vs model {life.banner!r}"
            assert banner.version >= self.highest_version.get(banner_id, 0), "version went down"
            self.highest_version[banner_id] = banner.version

    @invariant()
    def the_listing_names_the_registered_banners(self) -> None:
        listed = self.run(self.runtime.list_banners(after=None, limit=10))
        assert {b.id: b.version for b in listed} == {b: life.banner.version for b, life in self.model.items()}

    @invariant()
    def every_change_is_one_event_one_version_up(self) -> None:
        for event in self.events[self.checked_events :]:
            last = self.event_version.get(event.banner_id)
            if event.kind is ChangeKind.CREATED:
                assert event.version == 1
            else:
                assert last is not None and event.version == last + 1, f"{event} after version {last}"
            self.event_version[event.banner_id] = event.version
        self.checked_events = len(self.events)
        for banner_id, life in self.model.items():
            assert self.event_version.get(banner_id) == life.banner.version, f"events of {banner_id}"


#: A passing run takes ~5-10 s here; a failing one also shrinks its example (each failing run may wait
#: EXPIRY_WAIT_LIMIT), ~45 s for a wrong version rule in the model.
@pytest.mark.timeout(120)
def test_banner_actors_agree_with_a_reference_model(tmp_path):
    seen: Counter[str] = Counter()
    run_state_machine_as_test(
        lambda: BannerMachine(tmp_path, seen),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,  # steps wait on real SQLite commits and reminder turns
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Print the outcome counts with -s; each outcome must occur, or the machine stopped reaching it.
    print(f"outcomes over {seen['examples']} examples of up to {STEPS} steps: {dict(seen)}")
    assert seen["examples"] >= EXAMPLES
    assert set(seen) >= REQUIRED_OUTCOMES, f"never reached: {REQUIRED_OUTCOMES - set(seen)}"
