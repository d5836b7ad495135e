"""The report's chart: coverage by table, component size distribution, rows changed per
loop iteration, as one PNG next to the Markdown report."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def write_chart(
    path: Path,
    coverage: dict[str, float],
    component_sizes: list[tuple[str, int]],
    rows_changed: list[int],
    threshold: float,
    title: str,
) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.barh(list(coverage), list(coverage.values()), color="#4C72B0")
    ax.axvline(threshold, color="#C44E52", linestyle="--", label=f"minimum {threshold:g}%")
    ax.set_xlim(0, 100)
    ax.set_title("Coverage by table (%)")
    ax.legend(loc="lower left")
    ax = axes[1]
    ax.bar([b for b, _ in component_sizes], [n for _, n in component_sizes], color="#55A868")
    ax.set_title("Ids by identifiers per id")
    ax.set_xlabel("identifiers")
    ax = axes[2]
    ax.plot(range(1, len(rows_changed) + 1), rows_changed, marker="o", color="#8172B2")
    ax.set_title("Rows changed per loop iteration")
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yscale("log" if rows_changed and max(rows_changed) > 100 else "linear")
    fig.suptitle(title)
    # Margins from the longest table name (about 0.085 in per character of a 10 pt tick label)
    # instead of tight_layout, which measures every text twice: 0.23 of the chart's 0.4 s.
    width = fig.get_figwidth()
    longest = max((len(str(name)) for name in coverage), default=0)
    fig.subplots_adjust(left=min(0.4, (0.3 + 0.085 * longest) / width), right=0.985, bottom=0.14, top=0.84, wspace=0.22)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
