"""The commit packer (``storage/packing.py``), without Redis: every named key lands in the slot
the Lua header names it at, the script reads each slot under that name, the argument layout is
pinned, and the Lua status list is the contract's."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from durable_redis.contract import (
    InstanceCreate,
    InstanceStatus,
    NewWorkItem,
    OutboundMessage,
    TurnCommit,
)
from durable_redis.errors import InvalidIdError
from durable_redis.storage.base import OrchestrationLease, WorkTake
from durable_redis.storage.keys import PartitionKeys, partition_of
from durable_redis.storage.packing import (
    COMMIT_TURN_ARGV,
    COMMIT_TURN_KEYS,
    GROUP_KEYS,
    REPLY_TTL_MS,
    STREAM_MAXLEN,
    STREAM_TTL_MS,
    pack_commit,
    session_owner_fields,
)
from durable_redis.storage.scripts import SCRIPTS, lua_dir

PK = PartitionKeys("ns", 0)
IK = PK.instance("a")
LEASE = OrchestrationLease(
    instance_id="a",
    token="7:tok",
    lease_until_ms=2_000,
    fetched_at_ms=1_000,
    execution_id=1,
    history=[b"e1"],
    messages=[],
    attempt=1,
    instance=None,
)

# What each named key must be, written out independently of the packer's own table.
EXPECTED_KEYS = {
    "pmeta": PK.pmeta,
    "seq": PK.seq,
    "oq_lock": PK.oq_lock,
    "oq_locks": PK.oq_locks,
    "oq_ready": PK.oq_ready,
    "oq_marker": PK.oq_marker,
    "inst": IK.record,
    "done": IK.done,
    "mz": IK.mz,
    "mh": IK.mh,
    "hist": IK.history(1),
    "idx_created": PK.idx_created,
    "idx_terminal": PK.idx_terminal,
    "idx_pending": PK.idx_status("pending"),
    "idx_running": PK.idx_status("running"),
    "idx_completed": PK.idx_status("completed"),
    "idx_failed": PK.idx_status("failed"),
    "idx_cancelled": PK.idx_status("cancelled"),
    "idx_continued_as_new": PK.idx_status("continued_as_new"),
    "witems": IK.work,
    "sset": IK.sessions,
    "children": IK.children,
    "wq_items": PK.wq_items,
    "wq_ready": PK.wq_ready,
    "wq_sready": PK.wq_sready,
    "wq_delayed": PK.wq_delayed,
    "wq_leases": PK.wq_leases,
    "wq_marker": PK.wq_marker,
    "wq_smarker": PK.wq_smarker,
    "sess": PK.sess,
    "outbox": PK.outbox,
    "outbox_data": PK.outbox_data,
    "values": IK.values,
    "replies": IK.replies,
    "stream": IK.stream,
}


def _commit(**kw: object) -> TurnCommit:
    fields: dict[str, object] = {
        "execution_id": 1,
        "expected_history_len": 1,
        "events": [b"e2"],
        "status": InstanceStatus.RUNNING,
    }
    fields.update(kw)
    return TurnCommit(**fields)  # type: ignore[arg-type]


def misplaced(keys: Sequence[str], names: Sequence[str]) -> list[str]:
    """The names whose slot (in ``names`` order) does not hold the key that name stands for."""
    return [n for n, k in zip(names, keys, strict=False) if EXPECTED_KEYS[n] != k]


# -- the names: packer table = Lua header = the script's locals ------------------------------


def _header_names(section: str) -> list[tuple[int, str]]:
    text = (lua_dir() / "commit_turn.lua").read_text()
    header = text[: text.index("]]")] + "\n"
    match = re.search(rf"^{section}\n(.*?)^(?:KEYS|ARGV|RETURNS|STATUS)\n", header, re.M | re.S)
    assert match is not None
    return [(int(n), name) for n, name in re.findall(r"^\s+(\d+) +([a-z_]+)", match[1], re.M)]


def _local_names(kind: str, prefix: str, text: str) -> list[tuple[int, str]]:
    found = [
        (int(n), name)
        for name, n in re.findall(rf"^local {prefix}_(\w+) = {kind}\[(\d+)\]", text, re.M)
    ]
    for name, first in re.findall(rf"^local {prefix}_(\w+) = status_keys\((\d+)\)", text, re.M):
        found += [
            (int(first) + i, f"{name[: -len('status')]}{s.value}")
            for i, s in enumerate(InstanceStatus)
        ]
    return sorted(found)


def test_the_packer_tables_are_the_lua_header_and_the_scripts_locals() -> None:
    text = (lua_dir() / "commit_turn.lua").read_text()
    body = text[text.index("]]") :]
    expected_keys = list(enumerate(COMMIT_TURN_KEYS, 1))
    expected_argv = list(enumerate(COMMIT_TURN_ARGV, 1))
    assert _header_names("KEYS") == expected_keys
    assert _header_names("ARGV") == expected_argv
    assert _local_names("KEYS", "K", body) == expected_keys
    assert _local_names("ARGV", "A", body) == expected_argv
    assert f"local N_FIXED_KEYS = {len(COMMIT_TURN_KEYS)}" in body
    assert f"local N_FIXED_ARGV = {len(COMMIT_TURN_ARGV)}" in body
    spec = SCRIPTS["commit_turn"]
    assert (spec.keys, spec.argv) == (len(COMMIT_TURN_KEYS), len(COMMIT_TURN_ARGV))
    group = re.search(r"group_keys\(g\)\s+-- (\w+), (\w+), (\w+), (\w+), (\w+)", body)
    assert group is not None and group.groups() == GROUP_KEYS


@pytest.mark.parametrize(
    "script",
    [
        "commit_turn",
        "claim_orchestration",
        "lock_messages",
        "renew_orchestration",
        "abandon_orchestration",
    ],
)
def test_turn_scripts_read_keys_and_argv_by_name_only(script: str) -> None:
    """Numbered KEYS/ARGV appear only where a name is given to them (and, in commit_turn, in
    the two helpers that address the variable tail): nothing indexes by number in the body."""
    text = (lua_dir() / f"{script}.lua").read_text()
    body = text[text.index("]]") :]
    for line in body.splitlines():
        line = line.split("--")[0]  # code, not its comment
        if re.search(r"\b(KEYS|ARGV)\[", line):
            assert re.match(r"^local [KA]_\w+ = (KEYS|ARGV)\[\d+\]", line) or re.search(
                r"KEYS\[(b \+ \d|N_FIXED_KEYS \+)|ARGV\[pos\]", line
            ), f"{script}: {line.strip()}"
    assert "if not epoch_ok(K_pmeta, A_epoch) then return {2} end" in body


def test_the_lua_status_list_is_the_contracts() -> None:
    common = (lua_dir() / "includes" / "common.lua").read_text()
    statuses = re.search(r"^local STATUSES = \{(.*)\}$", common, re.M)
    terminal = re.search(r"^local TERMINAL = \{(.*)\}$", common, re.M)
    assert statuses and terminal
    assert re.findall(r"'(\w+)'", statuses[1]) == [s.value for s in InstanceStatus]
    assert set(re.findall(r"(\w+) = true", terminal[1])) == {
        s.value for s in InstanceStatus if s.is_terminal
    }


# -- keys ------------------------------------------------------------------------------------


def test_each_named_key_lands_in_the_slot_the_header_names() -> None:
    keys, _, _ = pack_commit(PK, LEASE, _commit(), epoch="E", partitions=1)
    assert len(keys) == len(COMMIT_TURN_KEYS)
    assert misplaced(keys, COMMIT_TURN_KEYS) == []
    assert set(EXPECTED_KEYS) == set(COMMIT_TURN_KEYS)


def test_a_swapped_key_is_caught() -> None:
    """Two keys in each other's slots (what a reordered table or a mistyped ``KEYS[n]`` would
    do) are both reported by the check the test above runs."""
    keys, _, _ = pack_commit(PK, LEASE, _commit(), epoch="E", partitions=1)
    i, j = COMMIT_TURN_KEYS.index("mz"), COMMIT_TURN_KEYS.index("mh")
    swapped = list(keys)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert misplaced(swapped, COMMIT_TURN_KEYS) == ["mz", "mh"]
    names = list(COMMIT_TURN_KEYS)
    names[i], names[j] = names[j], names[i]  # the header renamed, the packer not
    assert misplaced(keys, names) == ["mh", "mz"]


def test_target_groups_then_wake_keys_follow_the_fixed_keys() -> None:
    parent_start = OutboundMessage(
        "kid", "m1", b"start", create=InstanceCreate("child", parent_instance_id="a")
    )
    to_b = OutboundMessage("b", "m2", b"ev")
    to_self = OutboundMessage("a", "m3", b"timer", visible_at_ms=5)
    keys, args, outbox = pack_commit(
        PK,
        LEASE,
        _commit(messages=[parent_start, to_b, to_self, to_b]),
        epoch="E",
        partitions=1,
        wake_owners=["w1", "w2"],
    )
    n = len(COMMIT_TURN_KEYS)
    kid, b = PK.instance("kid"), PK.instance("b")
    assert GROUP_KEYS == ("inst", "done", "mz", "mh", "children")
    assert keys[n:] == [
        *(kid.record, kid.done, kid.mz, kid.mh, IK.children),  # group 1: its parent's children
        *(b.record, b.done, b.mz, b.mh, b.children),  # group 2 (once for two messages)
        PK.wq_wake("w1"),
        PK.wq_wake("w2"),
    ]
    argv = dict(zip(COMMIT_TURN_ARGV, args, strict=False))
    assert (argv["n_groups"], argv["n_wake"]) == (2, 2)
    assert not outbox


# -- arguments -------------------------------------------------------------------------------


def test_the_argument_layout() -> None:
    commit = _commit(
        events=[b"e2", b"e3"],
        status=InstanceStatus.COMPLETED,
        name="wf",
        version=None,
        input=b"in",
        output=b"out",
        error=None,
        set_custom_status=True,
        custom_status=None,
        work_items=[NewWorkItem("1:2", b"task", session_id="s1", visible_at_ms=9)],
        messages=[OutboundMessage("a", "t1", b"timer", visible_at_ms=50)],
        cancelled_work=["1:1"],
        sessions_opened=["s1"],
        sessions_closed=["s0"],
        values=[("k", b"v"), ("gone", None)],
        update_replies=[("u1", b"r")],
        stream_items=[b"p"],
    )
    keys, args, outbox = pack_commit(
        PK,
        LEASE,
        commit,
        epoch="E",
        partitions=1,
        wake_owners=["w1"],
        take=WorkTake("me", 3, 30_000),
        take_nonce="N",
        claim_nonce="C",
        claim_lock_ms=20_000,
    )
    assert args == [
        *("E", "a", "7:tok", 1, 1, "completed"),
        *("1", "wf", "0", "", "1", b"in"),  # name set, version left, input set
        *("1", b"out", "2", b"", "2", b""),  # output set, error cleared, custom cleared
        *(0, 1, "me", "N", 3, 30_000),  # groups, wake keys, take
        *("C", 20_000),  # the claim of the next instance
        *(2, b"e2", b"e3"),
        *(1, "a\n1:2", "1:2", "s1", "9", b"task"),
        *(1, "a\n1:1"),
        *(1, "s1"),
        *(1, "s0"),
        *(1, 0, "a", "t1", b"timer", "50", "0", "", "", "", "0", b""),
        "w1",
        *(2, "k", "1", b"v", "gone", "2", b""),
        *(1, "u1", b"r", REPLY_TTL_MS),
        *(1, b"p", STREAM_MAXLEN, STREAM_TTL_MS),
    ]
    assert len(keys) == len(COMMIT_TURN_KEYS) + 1 and not outbox


def test_flags_for_fields_left_alone_and_no_take() -> None:
    _, args, _ = pack_commit(PK, LEASE, _commit(), epoch="E", partitions=1)
    argv = dict(zip(COMMIT_TURN_ARGV, args, strict=False))
    assert [
        argv[f"{f}_set"] for f in ("name", "version", "input", "output", "error", "custom")
    ] == [
        "0",
        "0",
        "0",
        "2",
        "2",
        "0",
    ]
    assert (argv["take_worker"], argv["take_nonce"], argv["take_limit"]) == ("", "", 0)
    assert (argv["claim_nonce"], argv["claim_lock_ms"]) == ("", 0)  # no claim asked
    _, args, _ = pack_commit(
        PK, LEASE, _commit(), epoch="E", partitions=1, take=WorkTake("me", 0, 1), take_nonce="N"
    )
    argv = dict(zip(COMMIT_TURN_ARGV, args, strict=False))
    assert (argv["take_worker"], argv["take_nonce"]) == ("", "N")  # limit 0: lease nothing


def test_a_message_to_another_partition_goes_to_the_outbox() -> None:
    other = next(f"x{n}" for n in range(100) if partition_of(f"x{n}", 4) != partition_of("a", 4))
    pk = PartitionKeys("ns", partition_of("a", 4))
    _, args, outbox = pack_commit(
        pk, LEASE, _commit(messages=[OutboundMessage(other, "m", b"x")]), epoch="E", partitions=4
    )
    assert outbox
    assert args[args.index(other) - 1] == -1  # group -1: the outbox


def test_bad_ids_and_a_parent_in_another_partition_are_refused() -> None:
    with pytest.raises(InvalidIdError):
        pack_commit(
            PK,
            LEASE,
            _commit(messages=[OutboundMessage("b\n", "m", b"x")]),
            epoch="E",
            partitions=1,
        )
    with pytest.raises(InvalidIdError):
        pack_commit(PK, LEASE, _commit(work_items=[NewWorkItem("", b"t")]), epoch="E", partitions=1)
    with pytest.raises(InvalidIdError):
        pack_commit(PK, LEASE, _commit(sessions_opened=["s\x00"]), epoch="E", partitions=1)
    here = partition_of("a", 4)
    kid = next(f"k{n}" for n in range(100) if partition_of(f"k{n}", 4) == here)
    far = next(f"p{n}" for n in range(100) if partition_of(f"p{n}", 4) != here)
    start = OutboundMessage(kid, "m", b"x", create=InstanceCreate("c", parent_instance_id=far))
    with pytest.raises(NotImplementedError):
        pack_commit(
            PartitionKeys("ns", here), LEASE, _commit(messages=[start]), epoch="E", partitions=4
        )


def test_session_owner_fields() -> None:
    commit = _commit(
        work_items=[NewWorkItem("1:1", b"t", session_id="s2"), NewWorkItem("1:2", b"t")],
        sessions_closed=["s1", "s2"],
    )
    assert session_owner_fields("a", commit) == ["a\ns1|o", "a\ns2|o"]
    assert session_owner_fields("a", _commit()) == []
    with pytest.raises(InvalidIdError):
        session_owner_fields("a", _commit(sessions_closed=["bad\n"]))


def test_a_swapped_key_in_the_script_is_caught() -> None:
    """The script reading two slots under each other's names no longer matches the table."""
    text = (lua_dir() / "commit_turn.lua").read_text()
    body = text[text.index("]]") :]
    swapped = body.replace("local K_mz = KEYS[9]", "local K_mz = KEYS[10]", 1).replace(
        "local K_mh = KEYS[10]", "local K_mh = KEYS[9]", 1
    )
    assert swapped != body
    assert _local_names("KEYS", "K", body) == list(enumerate(COMMIT_TURN_KEYS, 1))
    assert _local_names("KEYS", "K", swapped) != list(enumerate(COMMIT_TURN_KEYS, 1))


def test_a_routed_work_item_carries_its_queue_and_priority() -> None:
    routed = NewWorkItem("1:2", b"t", visible_at_ms=9, queue="gpu", priority=2)
    _, args, _ = pack_commit(PK, LEASE, _commit(work_items=[routed]), epoch="E", partitions=1)
    at = args.index("a\n1:2")
    assert args[at : at + 5] == ["a\n1:2", "1:2", "", "9;gpu;2", b"t"]
