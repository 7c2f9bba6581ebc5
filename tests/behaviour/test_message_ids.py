"""Message ids: 128 random bits as 32 hex digits, unique, and not repeated by a forked child."""

from __future__ import annotations

import os
import re

from airdisplay.runtimes.behaviour import new_message_id


def test_ids_are_32_hex_digits_and_do_not_repeat():
    ids = [new_message_id() for _ in range(100_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave without running pytest's exit handlers
        os.close(read)
        os.write(write, "".join(new_message_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    parent = [new_message_id() for _ in range(10)]
    with os.fdopen(read, "rb") as pipe:
        child_text = pipe.read().decode()
    os.waitpid(pid, 0)
    child = [child_text[i : i + 32] for i in range(0, len(child_text), 32)]
    assert len(child) == 10
    assert not set(child) & set(parent)
