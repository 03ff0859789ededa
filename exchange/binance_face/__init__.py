"""A Binance USDⓈ-M futures face on the simulated exchange engine.

``main.py exchange --protocol binanceusdm`` serves it; unmodified ccxt
(``binanceusdm``, REST and pro) talks to it once pointed at it with
:func:`exchange.binance_face.urls.apply_urls`. See docs/binance_face.md.
Importing this package starts nothing (rule 14).
"""

from exchange.binance_face.auth import DEFAULT_KEYS, ApiKey
from exchange.binance_face.urls import CCXT_OPTIONS, apply_urls, ccxt_urls

__all__ = ["ApiKey", "CCXT_OPTIONS", "DEFAULT_KEYS", "apply_urls", "ccxt_urls"]
