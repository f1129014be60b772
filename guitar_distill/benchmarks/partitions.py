"""`python -m benchmarks.partitions FILE.tflite ...`: which ops of a TFLite file XNNPACK runs.

LiteRT hands every op XNNPACK supports to its delegate, in as few partitions as the graph allows;
the rest run on LiteRT's own kernels, with a copy in and out of each partition. An int8 file is only
as fast as its slowest op outside the delegate (int8 SOFTMAX and the QUANTIZE of a uint8 input are
the usual ones), so this lists them: the number of partitions, and every op left outside.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guitar_distill.benchmarks.record import write_record
from guitar_distill.common.config import DEFAULT_ARTIFACTS
from guitar_distill.common.errors import ToolkitError, run_cli
from guitar_distill.common.markdown import markdown_table


def delegated_partitions(path: Path) -> dict:
    """{"nodes", "partitions", "outside": [op names not run by XNNPACK, in graph order]}."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))  # XNNPACK is LiteRT's default delegate on CPU
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    graph_inputs = {int(d["index"]) for d in interpreter.get_input_details()}
    into = {int(t) for d in delegates for t in d["inputs"]}  # what the partitions read
    out_of = {int(t) for d in delegates for t in d["outputs"]}  # what they hand back
    producer = {int(t): k for k, op in enumerate(originals) for t in op["outputs"]}
    inside: set[int] = set()
    for k, op in enumerate(originals):  # graph order: an op's producers come first
        ins = [int(t) for t in op["inputs"] if int(t) >= 0]
        fed = all(
            t in into or (t in producer and producer[t] in inside) or (t not in producer and t not in graph_inputs)
            for t in ins
        )  # the last: constants
        if delegates and fed and not ({int(t) for t in op["outputs"]} & into) and not (set(ins) & out_of):
            inside.add(k)
    outside = [op for k, op in enumerate(originals) if k not in inside]
    return {"nodes": len(originals), "partitions": len(delegates), "outside": [op["op_name"] for op in outside]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.partitions", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help=".tflite files")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_ARTIFACTS / "bench", help="record folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise ToolkitError(f"no such file: {', '.join(missing)}")
    results = {str(f): delegated_partitions(f) for f in args.files}
    table = markdown_table(
        ["file", "ops", "XNNPACK partitions", "ops outside XNNPACK"],
        [[f, r["nodes"], r["partitions"], ", ".join(r["outside"]) or "none"] for f, r in results.items()],
        "lrrl",
    )
    write_record(
        args.out,
        "partitions",
        "benchmarks.partitions",
        argv,
        title="XNNPACK partitions",
        settings={},
        results=results,
        table=table,
    )
    print(table)
    print(f"written: {args.out / 'partitions.md'}, {args.out / 'partitions.json'}")


if __name__ == "__main__":
    run_cli(main)
