"""Print the Markdown tables of docs/results.md from the JSON files of evaluate_models.sh.

Usage: python docs/results/make_tables.py EVAL_DIR NAME...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEDULES = ("torch", "sync", "bernoulli", "async")
STEPS = ("10", "20", "40", "80", "200", "1000")


def format_iou(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def iou_table(eval_dir: Path, name: str) -> str:
    lines = [
        "| schedule | class | " + " | ".join(f"step {s}" for s in STEPS) + " |",
        "|---|---|" + "---|" * len(STEPS),
    ]
    for schedule in SCHEDULES:
        document = json.loads((eval_dir / f"{name}.{schedule}.json").read_text())
        results = document["results"]
        for row in ("object", "boundary", "background", "mean"):
            if row == "mean":
                cells = [format_iou(results[s]["mean"]) for s in STEPS]
            else:
                cells = [format_iou(results[s]["per_class"][row]) for s in STEPS]
            lines.append(f"| {schedule} | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def norms_table(eval_dir: Path, names: list[str]) -> str:
    lines = ["| model | state_l1 | logits_l1 | state_change_l1 | logits_change_l1 |", "|---|---|---|---|---|"]
    for name in names:
        rows = {row["series"]: row for row in json.loads((eval_dir / f"{name}.norms.json").read_text())["rows"]}
        cells = []
        for series in ("state_l1", "logits_l1", "state_change_l1", "logits_change_l1"):
            row = rows[series]
            text = f"{row['verdict']} (level {row['level']:.3g})"
            if row["verdict"] == "exponential":
                text += f", rate {row['rate']:.2g}/step"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recovery_table(eval_dir: Path, names: list[str]) -> str:
    lines = ["| model | image changes | mean drop | recovered | median steps to recover | final mean IoU |",
             "|---|---|---|---|---|---|"]
    for name in names:
        document = json.loads((eval_dir / f"{name}.iou.json").read_text())
        rows = document["rows"]
        drops = [row["drop"] for row in rows]
        recovered = sorted(row["recovery_steps"] for row in rows if isinstance(row["recovery_steps"], int))
        median = recovered[len(recovered) // 2] if recovered else "-"
        lines.append(
            f"| {name} | {len(rows)} | {sum(drops) / len(drops):.3f} | {len(recovered)} of {len(rows)} | "
            f"{median} | {document['final_mean_iou']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    eval_dir, names = Path(argv[0]), argv[1:]
    for name in names:
        print(f"### {name}\n")
        print(iou_table(eval_dir, name))
        print()
    print("### Norms over 2000 steps\n")
    print(norms_table(eval_dir, names))
    print()
    print("### Image changes\n")
    print(recovery_table(eval_dir, names))


if __name__ == "__main__":
    main(sys.argv[1:])
