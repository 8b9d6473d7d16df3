"""The governor's lanes: the public shrinks first and most, the owner last and least, and the
owner's held-back places stay above what the other lanes may fill."""

from __future__ import annotations

import pytest

from app.access.keys import Lane
from app.admission.decision import Limits
from app.protection.governor import GovernorConfig, PressureGovernor
from app.settings import SettingsError, load_settings

CONFIG = GovernorConfig(floor=0.1, stale_factor=1.0)
BASE = Limits(global_limit=40, visitor_limit=6, inflight_cap=8)
FACTORS = [1.0, 0.9, 0.75, 0.5, 0.3, 0.1]


def governed(factor: float, reserved: int = 1, base: Limits = BASE) -> PressureGovernor:
    governor = PressureGovernor(base, CONFIG, owner_reserved=reserved)
    governor.factor = factor
    return governor


@pytest.mark.parametrize(
    ("factor", "public", "member", "owner"),
    [
        (1.0, 7, 7, 8),  # relaxed: only the held-back place sets the owner apart
        (0.5, 3, 4, 6),  # 7 * 0.5, 7 * 0.71, 8 * 0.84
        (0.25, 1, 3, 5),  # 7 * 0.25, 7 * 0.5, 8 * 0.71
        (0.1, 1, 2, 4),  # 7 * 0.1 (never below 1), 7 * 0.32, 8 * 0.56
    ],
)
def test_each_lanes_cap(factor: float, public: int, member: int, owner: int) -> None:
    """Public (C - R) * f, members (C - R) * f**0.5, the owner C * f**0.25, rounded down."""
    assert governed(factor).lane_caps() == {"owner": owner, "member": member, "public": public}


def test_lowering_the_factor_shrinks_public_limits_before_member_and_owner() -> None:
    """At every step down the public has lost at least as large a share of its places as
    members, and members as the owner; a key's window shrinks strictly less the higher its
    lane."""
    for factor in FACTORS:
        governor = governed(factor)
        caps = governor.lane_caps()
        assert caps["public"] / 7 <= caps["member"] / 7 <= caps["owner"] / 8
        scaled = [governor.scaled(100, lane) for lane in (Lane.PUBLIC, Lane.MEMBER, Lane.OWNER)]
        if factor < 1:
            assert scaled[0] < scaled[1] < scaled[2] < 100
        else:
            assert scaled == [100, 100, 100]
    assert governed(0.9).lane_caps()["public"] < 7  # the first step down shrinks the public


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize(
    ("cap", "reserved"), [(1, 0), (2, 0), (2, 1), (4, 0), (4, 1), (4, 3), (8, 1), (100, 3)]
)
def test_the_owner_always_has_its_places_above_the_others(
    factor: float, reserved: int, cap: int
) -> None:
    """Whatever the factor, the owner's cap is at least members' cap plus the held-back
    places, members' at least the public's, and none is below 1 or above the base."""
    caps = governed(factor, reserved, Limits(40, 6, cap)).lane_caps()
    assert 1 <= caps["public"] <= caps["member"] <= cap - reserved
    assert caps["member"] + reserved <= caps["owner"] <= cap


def test_only_the_publics_windows_shrink_by_the_factor() -> None:
    """Every lane's limits carry the public's windows shrunk by f (a keyed lane is not counted
    in them); the owner's say how many places are held back for it."""
    governor = governed(0.5)
    public, owner = governor.limits(Lane.PUBLIC), governor.limits(Lane.OWNER)
    assert (public.global_limit, public.visitor_limit) == (20, 6)
    assert (owner.global_limit, owner.reserved_inflight) == (20, 1)
    assert public.reserved_inflight == 0
    assert governor.limits() is public  # the public's by default, cached


def test_a_keys_limit_scales_by_its_lane_and_off_stays_off() -> None:
    """floor(limit * lane factor), never below 1; a limit of 0 (none) stays 0."""
    governor = governed(0.25)
    assert governor.scaled(100, Lane.OWNER) == 70  # 0.25 ** 0.25 = 0.707
    assert governor.scaled(100, Lane.MEMBER) == 50
    assert governor.scaled(1, Lane.MEMBER) == 1
    assert governor.scaled(0, Lane.OWNER) == 0


def test_caps_follow_a_changed_factor() -> None:
    """The cached limits are rebuilt when the factor moves."""
    governor = governed(1.0)
    assert governor.limits(Lane.MEMBER).inflight_cap == 7
    governor.factor = 0.25
    assert governor.limits(Lane.MEMBER).inflight_cap == 3


@pytest.mark.parametrize(("reserved", "inflight"), [(4, 4), (5, 4), (1, 1)])
def test_held_back_places_must_leave_room_for_the_other_lanes(reserved: int, inflight: int) -> None:
    """LLMGW_OWNER_RESERVED_INFLIGHT at or above LLMGW_MAX_INFLIGHT is refused at start."""
    with pytest.raises(SettingsError, match="LLMGW_OWNER_RESERVED_INFLIGHT must be below"):
        load_settings(owner_reserved_inflight=reserved, max_inflight=inflight)


def test_held_back_places_default_to_one_of_four() -> None:
    """The default: 1 of 4 held back; 0 holds none back, even with a single place."""
    assert load_settings().owner_reserved_inflight == 1
    assert load_settings(max_inflight=1, owner_reserved_inflight=0).max_inflight == 1
    with pytest.raises(SettingsError, match="LLMGW_OWNER_RESERVED_INFLIGHT"):
        load_settings(owner_reserved_inflight=-1)
