"""Offer floods (issue 9 row 4) against a victim process, measured from outside it.

Before the fix, 10 connections sending 166 offers/s for 10 s got 490 answers,
676 ICE datagrams sent to the attacker's chosen address, 7 presence flaps of the
victim and 19% of a core (``benchmarks/offer_flood.py`` on the same machine).
"""

from __future__ import annotations

import pytest

from benchmarks.offer_flood import FLOODERS, measure
from crdt_stores.transport.webrtc import OFFER_BURST, OFFERS_PER_SECOND

from .netutil import ROOT

pytestmark = pytest.mark.timeout(180)


async def test_an_offer_flood_is_bounded_and_an_honest_newcomer_still_links() -> None:
    duration = 6.0
    figures = await measure(ROOT, duration)
    print(figures)
    assert figures["victim_alive"]
    assert figures["victim_presence_flaps"] == 0  # its signaling socket was never closed
    # Answers: each flooder's offer budget, whatever the rate of offers.
    assert figures["answers_from_victim"] <= FLOODERS * (OFFER_BURST + OFFERS_PER_SECOND * duration)
    assert figures["answers_from_victim"] < figures["offers_sent"] / 10
    # ICE checks towards the attacker's address: a few per answered offer (each flooder
    # has one negotiation at a time; a new offer from it replaces the old one).
    answers_allowed = FLOODERS * (OFFER_BURST + OFFERS_PER_SECOND * duration)
    assert figures["datagrams_to_attacker_address"] <= 4 * answers_allowed
    assert figures["victim_cpu_share"] < 0.25
    assert figures["newcomer_linked_s"] is not None and figures["newcomer_linked_s"] < 5.0
