"""``ccxt_adapter_overhead_us``: the adapter's own time per order, without the wire.

The real ``CcxtVenueAdapter`` trades against the Binance face in a child
process (``ccxt_face.face_process``: its own GIL). Per order the adapter
records the time it spends outside the network await: mapping the
SubmitOrder to ccxt's arguments, the budget and the tracker, parsing the
REST answer into events and calling the sink, plus parsing every stream
report of the order (the user-data ``ORDER_TRADE_UPDATE``). ccxt's own
request building and signing happen inside the await and are part of the
round trip (``ccxt_roundtrip_*``), not of this figure. Goal: < 200 us.
"""

from __future__ import annotations

import tempfile
import threading
import time
from decimal import Decimal
from typing import Any

import numpy as np


def run(quick: bool) -> dict[str, Any]:
    from exchange.binance_face.urls import ccxt_urls
    from exchange.ccxt_venue.adapter import CcxtVenueAdapter
    from exchange.ccxt_venue.settings import VenueSettings
    from messages import OrderAcked, OrderRequest, OrderType, Side, StreamStatus, utc_now
    from messages.exchange import SubmitOrder
    from app.bench.ccxt_face import KEY, SECRET, face_process
    from messages.types import ClientOrderId, Price, Quantity, Symbol

    n = 300 if quick else 2_000
    with tempfile.TemporaryDirectory(prefix="tw-bench-ccxt-adapter-") as tmp, \
            face_process(tmp) as port:
        acked = threading.Semaphore(0)
        up = threading.Event()

        def sink(ev: Any) -> None:
            if type(ev) is OrderAcked:
                acked.release()
            elif type(ev) is StreamStatus and ev.connected:
                up.set()

        settings = VenueSettings(api_key=KEY, api_secret=SECRET, urls=ccxt_urls("127.0.0.1", port),
                                 account="bench")
        ad = CcxtVenueAdapter(settings, sink, name="bench-ccxt")
        ad.connect()
        try:
            if not up.wait(15):
                raise RuntimeError("adapter did not connect to the face")

            def one(i: int) -> None:
                req = OrderRequest(ClientOrderId(f"bench-{i}"), Symbol("BTCUSDT"), Side.BUY,
                                   OrderType.LIMIT, Quantity(Decimal("1")), utc_now(),
                                   price=Price(Decimal("90")))
                ad.send(SubmitOrder(req))
                if not acked.acquire(timeout=10):
                    raise RuntimeError(f"order {i} not acknowledged")

            for i in range(50):  # warm-up
                one(i)
            time.sleep(0.2)  # the warm-up's stream reports land before we count
            ad.overhead_ns.clear()
            ad.stream_ns.clear()
            ad.keep_overhead = True
            for i in range(50, 50 + n):
                one(i)
            time.sleep(0.3)  # their stream reports too
            ad.keep_overhead = False
            submit = np.array(ad.overhead_ns, dtype=float) / 1000
            stream = float(sum(ad.stream_ns)) / 1000
        finally:
            ad.close()
    per_order = (submit.sum() + stream) / max(len(submit), 1)
    return {"ccxt_adapter_overhead_us": round(float(per_order), 1),
            "ccxt_adapter_submit_p50_us": round(float(np.percentile(submit, 50)), 1),
            "ccxt_adapter_stream_us_per_order": round(stream / max(len(submit), 1), 1)}
