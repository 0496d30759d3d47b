"""The Markdown table ``nextvox evaluate`` prints (and bench/ writes)."""

from __future__ import annotations





def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_table(result: dict) -> str:
    """The result of :func:`evaluate_library` as Markdown tables (readable as plain text too).

    Rows are embeddings, with the chance level beneath; then the gender heads.

    >>> print(format_table({"n_tracks": 4, "n_singers": 2, "n_failed": 0,
    ...     "embeddings": {"mfcc": {"singer_map": 0.75, "singer_p_at_5": 0.5, "melody_map": None}},
    ...     "chance": {"singer_map": 0.5, "singer_p_at_5": 0.33, "melody_map": None},
    ...     "gender": {"default_head": {"accuracy": None, "balanced_accuracy": None, "note": "none yet"}}}))
    4 tracks, 2 singers.
    <BLANKLINE>
    | embedding | singer mAP | singer P@5 | melody mAP | note |
    |---|---:|---:|---:|---|
    | mfcc | 0.750 | 0.500 | — |  |
    | *chance* | 0.500 | 0.330 | — | random ranking |
    <BLANKLINE>
    | gender head | accuracy (leave one singer out) | balanced accuracy | note |
    |---|---:|---:|---|
    | default_head | — | — | none yet |
    """
    chance = result.get("chance", {})
    summary = f"{result['n_tracks']} tracks, {result['n_singers']} singers"
    if result.get("n_failed"):
        n = result["n_failed"]
        summary += f" ({n} labelled track{'s' if n > 1 else ''} could not be analysed and {'are' if n > 1 else 'is'} left out)"
    lines = [summary + "."]
    if result.get("n_singer_queries") is not None:
        lines.append(
            f"Queries: {result['n_singer_queries']} for singers, {result.get('n_melody_queries', 0)} for melodies"
            + (f"; gender on {result['n_gender_tracks']} tracks." if result.get("n_gender_tracks") else ".")
        )
    lines += [f"Note: {note}." for note in result.get("notes", [])]
    lines += ["", "| embedding | singer mAP | singer P@5 | melody mAP | note |", "|---|---:|---:|---:|---|"]
    for name, row in result["embeddings"].items():
        lines.append(f"| {name} | {_cell(row['singer_map'])} | {_cell(row['singer_p_at_5'])} | {_cell(row['melody_map'])} | {row.get('note', '')} |")
    lines.append(f"| *chance* | {_cell(chance.get('singer_map'))} | {_cell(chance.get('singer_p_at_5'))} | {_cell(chance.get('melody_map'))} | random ranking |")

    lines += ["", "| gender head | accuracy (leave one singer out) | balanced accuracy | note |", "|---|---:|---:|---|"]
    for name, row in result["gender"].items():
        accuracy = row.get("leave_one_singer_out_accuracy", row.get("accuracy"))
        lines.append(f"| {name} | {_cell(accuracy)} | {_cell(row['balanced_accuracy'])} | {row.get('note', '')} |")
    if chance.get("gender_accuracy") is not None:
        lines.append(f"| *chance* | {_cell(chance['gender_accuracy'])} | {_cell(chance['gender_balanced_accuracy'])} | majority gender |")
    return "\n".join(lines)
