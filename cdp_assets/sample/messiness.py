"""The messiness the staging rules handle, added to the identity columns (no columns yet)."""

from __future__ import annotations

import pandas as pd


class Messiness:
    def __init__(self, seed: int) -> None:
        self.duplicates = 0

    def apply(self, key: str, segment: int, frame: pd.DataFrame) -> pd.DataFrame:
        return frame
