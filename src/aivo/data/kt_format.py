"""Reader and writer for the three-line knowledge-tracing format.

Each learner is three lines: the number of attempts, the item ids, and the answers (1/0),
comma-separated. Ids may be 0- or 1-based (the reader reports which it saw); trailing commas
and blank lines between blocks are tolerated. Learners get ids `<file stem>-<block number>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aivo.data.schema import InteractionLog
from aivo.errors import DataError


def _fields(text: str) -> list[str]:
    parts = [p.strip() for p in text.strip().split(",")]
    while parts and parts[-1] == "":  # trailing comma(s)
        parts.pop()
    return parts


def read_kt_lines(path: str | Path, *, learner_prefix: str | None = None) -> InteractionLog:
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise DataError("file not found", path=source)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", path=source) from None
    # Keep real line numbers for messages; skip blank lines.
    lines = [(n, text) for n, text in enumerate(raw.splitlines(), start=1) if text.strip()]
    if not lines:
        raise DataError("empty file: expected blocks of three lines (count, item ids, answers)", path=source)
    if len(lines) % 3:
        n, _ = lines[-(len(lines) % 3)]
        raise DataError(f"incomplete block: a learner needs three lines (count, item ids, answers), "
                        f"found {len(lines) % 3} starting here", path=source, line=n)
    prefix = learner_prefix if learner_prefix is not None else path.stem
    learners: list[np.ndarray] = []
    items: list[str] = []
    answers: list[int] = []
    orders: list[np.ndarray] = []
    min_id: int | None = None
    for block in range(len(lines) // 3):
        (n_count, count_text), (n_ids, ids_text), (n_ans, ans_text) = lines[3 * block: 3 * block + 3]
        try:
            count = int(count_text.strip().rstrip(","))
        except ValueError:
            raise DataError(f"expected the number of attempts, got {count_text.strip()[:40]!r}",
                            path=source, line=n_count) from None
        if count <= 0:
            raise DataError(f"number of attempts must be positive, got {count}", path=source, line=n_count)
        ids = _fields(ids_text)
        ans = _fields(ans_text)
        if len(ids) != count:
            raise DataError(f"count line says {count} attempts but this line has {len(ids)} item ids",
                            path=source, line=n_ids)
        if len(ans) != count:
            raise DataError(f"count line says {count} attempts but this line has {len(ans)} answers",
                            path=source, line=n_ans)
        for value in ids:
            if not value.lstrip("-").isdigit():
                raise DataError(f"item ids must be whole numbers, got {value[:40]!r}", path=source, line=n_ids)
        for value in ans:
            if value not in ("0", "1"):
                raise DataError(f"answers must be 0 or 1, got {value[:40]!r}", path=source, line=n_ans)
        block_min = min(int(v) for v in ids)
        if block_min < 0:
            raise DataError(f"item ids must not be negative, got {block_min}", path=source, line=n_ids)
        min_id = block_min if min_id is None else min(min_id, block_min)
        learners.append(np.full(count, block, dtype=np.int64))
        items.extend(ids)
        answers.extend(int(v) for v in ans)
        orders.append(np.arange(count, dtype=np.int64))
    block_index = np.concatenate(learners)
    width = max(6, len(str(len(learners))))
    learner_names = np.array([f"{prefix}-{i:0{width}d}" for i in range(len(learners))], dtype=object)
    frame = pd.DataFrame({
        "learner_id": pd.array(learner_names[block_index], dtype="string"),
        "item_id": pd.array(items, dtype="string"),
        "correct": np.asarray(answers, dtype=np.int8),
        "order": np.concatenate(orders),
    })
    frame["skill_ids"] = frame["item_id"]
    frame = frame[["learner_id", "item_id", "skill_ids", "correct", "order"]]
    base = "0-based" if min_id == 0 else "1-based"
    notes = (f"three-line KT format, {len(learners)} learners, {len(frame)} interactions; "
             f"item ids are {base} (smallest id {min_id})",)
    # Already sorted by (learner, order) and valid by construction.
    return InteractionLog(frame, source=source, notes=notes)


def write_kt_lines(log: InteractionLog, path: str | Path) -> None:
    """Write a log in the three-line format (ids must be numeric)."""
    with open(path, "w", encoding="utf-8") as fh:
        for _, group in log.frame.groupby("learner_id", sort=False):
            group = group.sort_values("order")
            fh.write(f"{len(group)}\n")
            fh.write(",".join(group["item_id"].astype(str)) + "\n")
            fh.write(",".join(group["correct"].astype(int).astype(str)) + "\n")
