"""`smop-edge eval`: corpus WER of a bundle, clean and in seeded noise, with cached mouth crops."""

import json

import pytest

from conftest import tone_bursts, write_wav

from smop_edge.apps import evaluate
from smop_edge.apps.cli import main


def _eval(capsys, *args):
    code = main(["eval", *args, "--quiet"])
    out = capsys.readouterr()
    return code, out


def test_eval_json_reports_wer_per_condition_and_rows(dedr_bundle, tiny_corpus, capsys, tmp_path):
    manifest = str(tiny_corpus / "test" / "manifest.jsonl")
    cache = tmp_path / "crops"
    code, out = _eval(capsys, manifest, "--bundle", str(dedr_bundle), "--task", "avsr", "--snr", "clean", "0",
                      "--crop-cache", str(cache), "--json")
    assert code == 0, out.err
    report = json.loads(out.out)
    assert [c["snr"] for c in report["conditions"]] == [None, 0.0]
    for cond in report["conditions"]:
        assert len(cond["rows"]) == 2
        assert cond["errors"] == sum(r["errors"] for r in cond["rows"])
        for r in cond["rows"]:  # each row's errors split by kind; the hypothesis's length follows
            assert r["errors"] == r["substitutions"] + r["deletions"] + r["insertions"]
            assert len(r["hypothesis"].split()) == r["words"] - r["deletions"] + r["insertions"]
        for kind in ("substitutions", "deletions", "insertions"):
            assert cond[kind] == sum(r[kind] for r in cond["rows"])
        assert cond["words"] == sum(len(r["reference"].split()) for r in cond["rows"])
        assert cond["wer"] == pytest.approx(cond["errors"] / cond["words"])
        voices = {json.loads(line)["voice"] for line in open(manifest)}
        assert set(cond["voices"]) == voices  # the same tally per voice
        for voice, v in cond["voices"].items():
            mine = [r for r in cond["rows"] if r["voice"] == voice]
            assert (v["errors"], v["words"]) == (sum(r["errors"] for r in mine), sum(r["words"] for r in mine))
    total = sum(c["words"] for c in report["conditions"])
    assert report["wer"] == pytest.approx(sum(c["errors"] for c in report["conditions"]) / total)
    crops = sorted(cache.glob("*.npz"))
    assert len(crops) == 2
    stamp = [p.stat().st_mtime_ns for p in crops]
    # same seed, same noise, same answers; the crops are reused, not redone
    code, again = _eval(capsys, manifest, "--bundle", str(dedr_bundle), "--task", "avsr", "--snr", "clean", "0",
                        "--crop-cache", str(cache), "--json")
    assert json.loads(again.out) == report
    assert [p.stat().st_mtime_ns for p in crops] == stamp


def test_eval_text_output_and_bad_requests(dedr_bundle, tiny_corpus, capsys, tmp_path, monkeypatch):
    manifest = str(tiny_corpus / "test" / "manifest.jsonl")
    code, out = _eval(capsys, manifest, "--bundle", str(dedr_bundle), "--task", "asr", "--snr", "5",
                      "--noise", "white")
    assert code == 0 and "asr 5 dB white: WER" in out.out
    rows = [json.loads(line) for line in open(manifest)]
    two = tmp_path / "two.jsonl"  # rows of two voices: a line per voice under the total
    two.write_text("".join(json.dumps({**r, "path": str(tiny_corpus / "test" / r["path"]), "voice": v}) + "\n"
                           for r, v in zip(rows, ["first", "second"])))
    code, out = _eval(capsys, str(two), "--bundle", str(dedr_bundle), "--task", "asr")
    lines = out.out.splitlines()
    assert code == 0 and lines[0].startswith("asr clean: WER")
    assert [line.split(":")[0] for line in lines[1:]] == ["  first", "  second"]
    report = json.loads(_eval(capsys, str(two), "--bundle", str(dedr_bundle), "--task", "asr", "--json")[1].out)
    cond = report["conditions"][0]
    assert f"{cond['substitutions']} sub, {cond['deletions']} del, {cond['insertions']} ins;" in lines[0]
    for line, v in zip(lines[1:], cond["voices"].values()):
        assert line.endswith(f"({v['errors']} / {v['words']}: {v['substitutions']} sub, {v['deletions']} del, "
                             f"{v['insertions']} ins)")
    # speakers named apart from the voices: a line per speaker, then the mean of the speakers' WERs
    monkeypatch.setattr(evaluate, "MIN_SPEAKER_WORDS", 1)
    named = tmp_path / "named.jsonl"
    named.write_text("".join(json.dumps({**json.loads(line), "speaker": who}) + "\n"
                             for line, who in zip(two.read_text().splitlines(), ["ann", "bob"])))
    lines = _eval(capsys, str(named), "--bundle", str(dedr_bundle), "--task", "asr")[1].out.splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == ["  first", "  second", "  speaker ann", "  speaker bob",
                                                          "  per speaker"]
    assert [line.split(":", 1)[1] for line in lines[3:5]] == [line.split(":", 1)[1] for line in lines[1:3]]
    mean = sum(v["wer"] for v in cond["voices"].values()) / 2
    assert lines[5].startswith(f"  per speaker: WER {100 * mean:.1f} % (the mean of the 2 speakers")
    code, out = _eval(capsys, manifest, "--bundle", str(dedr_bundle), "--task", "vsr", "--snr", "5")
    assert code == 2 and "vsr" in out.err
    code, out = _eval(capsys, manifest, "--bundle", str(dedr_bundle), "--snr", "loud")
    assert code == 2 and "--snr" in out.err
    code, out = _eval(capsys, str(tmp_path / "none.jsonl"), "--bundle", str(dedr_bundle))
    assert code == 2 and "no manifest" in out.err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "one"}\n')
    code, out = _eval(capsys, str(bad), "--bundle", str(dedr_bundle))
    assert code == 2 and "bad.jsonl:1" in out.err
    write_wav(tmp_path / "voice.wav", tone_bursts(1.0))  # audio only: unsuitable for avsr, as in transcribe
    bad.write_text('{"path": "voice.wav", "text": "one"}\n')
    code, out = _eval(capsys, str(bad), "--bundle", str(dedr_bundle), "--task", "avsr")
    assert code == 5 and "needs video, the file has none" in out.err


def test_tally_weighs_each_speaker_the_same_and_leaves_out_the_few_worded():
    """Per voice and per speaker (a speaker may span voices; one without a speaker is its voice's), and the
    per-speaker mean over speakers with MIN_SPEAKER_WORDS words or more, each counting once."""
    def row(voice, speaker, wrong, n):
        return evaluate.Row.scored(voice, None, " ".join(["one"] * n), " ".join(["one"] * (n - wrong) + ["two"] * wrong),
                                   voice, speaker)

    cond = evaluate.Condition(None, rows=[row("a-words", "ann", 1, 10), row("a-strings", "ann", 3, 10),
                                          row("bob", "", 5, 10), row("cat", "", 2, 2)])
    cond.tally()
    assert cond.wer == pytest.approx(11 / 32)
    assert {v: (t["errors"], t["words"]) for v, t in cond.voices.items()} == {
        "a-words": (1, 10), "a-strings": (3, 10), "bob": (5, 10), "cat": (2, 2)}
    assert {s: (t["errors"], t["words"]) for s, t in cond.speakers.items()} == {
        "ann": (4, 20), "bob": (5, 10), "cat": (2, 2)}
    assert evaluate.MIN_SPEAKER_WORDS > 2 and cond.speaker_wer == pytest.approx((4 / 20 + 5 / 10) / 2)
    assert cond.speakers_in_mean == ["ann", "bob"]
    alone = evaluate.Condition(None, rows=[row("cat", "", 2, 2)])
    alone.tally()
    assert alone.speaker_wer is None


def test_a_clip_without_a_face_counts_as_deleted_words(dedr_bundle, tiny_corpus, capsys, tmp_path):
    import numpy as np

    from smop_edge.runtime.media import write_video

    corpus = [json.loads(line) for line in (tiny_corpus / "test" / "manifest.jsonl").read_text().splitlines()]
    rows = [{"id": r["id"], "path": str(tiny_corpus / "test" / r["path"]), "text": r["text"]} for r in corpus]
    write_video(tmp_path / "blank.mp4", np.full((25, 64, 64, 3), 128, np.uint8), audio=np.zeros(16000, np.float32))
    rows.append({"id": "blank", "path": str(tmp_path / "blank.mp4"), "text": "one two three"})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = _eval(capsys, str(manifest), "--bundle", str(dedr_bundle), "--task", "avsr",
                      "--crop-cache", str(tmp_path / "crops"), "--json")
    assert code == 0, out.err
    row = json.loads(out.out)["conditions"][0]["rows"][-1]
    assert row["no_face"] and row["hypothesis"] == "" and row["errors"] == row["words"] == row["deletions"] == 3
    code, out = _eval(capsys, str(manifest), "--bundle", str(dedr_bundle), "--task", "avsr",
                      "--crop-cache", str(tmp_path / "crops"))
    assert "1 without a face found" in out.out


def test_eval_searches_as_transcribe_does(dedr_bundle, tiny_corpus, capsys):
    """`--beams` / `--length-penalty` reach every utterance: eval's hypotheses are transcribe's with the
    same search, and the report records the search."""
    manifest = tiny_corpus / "test" / "manifest.jsonl"
    search = ["--beams", "3", "--length-penalty", "0.5", "--max-new-tokens", "6"]
    code, out = _eval(capsys, str(manifest), "--bundle", str(dedr_bundle), "--task", "asr", "--json", *search)
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["decoding"] == {"beams": 3, "max_new_tokens": 6, "length_penalty": 0.5}
    for row, line in zip(report["conditions"][0]["rows"], open(manifest)):
        clip = manifest.parent / json.loads(line)["path"]
        assert main(["transcribe", str(clip), "--bundle", str(dedr_bundle), "--task", "asr", "--quiet",
                     "--json", *search]) == 0
        assert json.loads(capsys.readouterr().out)["text"] == row["hypothesis"]
    code, out = _eval(capsys, str(manifest), "--bundle", str(dedr_bundle), "--beams", "0")
    assert code == 2 and "--beams" in out.err


def test_paired_bootstrap_tells_a_change_from_the_sets_noise():
    import numpy as np

    words = np.full(200, 5)
    same = np.arange(200) % 3
    c = evaluate.Comparison.paired("r.json", same, same, words)
    assert (c.difference, c.low, c.high, c.utterances) == (0.0, 0.0, 0.0, 200)
    better = np.maximum(same - 1, 0)  # one error fewer on two utterances in three: a real change
    c = evaluate.Comparison.paired("r.json", better, same, words)
    assert c.difference == pytest.approx(-100 * 133 / 1000) and c.low <= c.difference <= c.high < 0
    mixed = same + np.isin(np.arange(200), [0, 2]) - (np.arange(200) == 1)  # +1, -1, +1 on three utterances
    c = evaluate.Comparison.paired("r.json", mixed, same, words)
    assert c.difference == pytest.approx(0.1) and c.low < 0 < c.high


def test_eval_against_an_earlier_report(dedr_bundle, tiny_corpus, capsys, tmp_path):
    manifest = str(tiny_corpus / "test" / "manifest.jsonl")
    args = [manifest, "--bundle", str(dedr_bundle), "--task", "asr", "--snr", "clean", "5", "--noise", "white"]
    code, out = _eval(capsys, *args, "--json")
    assert code == 0, out.err
    earlier = tmp_path / "earlier.json"
    earlier.write_text(out.out)
    report = json.loads(out.out)
    code, out = _eval(capsys, *args, "--against", str(earlier), "--json")
    assert code == 0, out.err
    for cond in json.loads(out.out)["conditions"]:  # the same bundle: no difference
        assert cond["against"] == {"against": str(earlier), "utterances": 2, "difference": 0.0, "low": 0.0,
                                   "high": 0.0}
    # an earlier report with one more error on the first utterance: this one is that much better
    first = report["conditions"][0]["rows"][0]
    first["errors"] += 1
    earlier.write_text(json.dumps(report))
    code, out = _eval(capsys, *args, "--against", str(earlier))
    words = report["conditions"][0]["words"]
    assert code == 0 and f"against {earlier}: {-100 / words:+.2f} points" in out.out
    assert "paired bootstrap over 2 utterances" in out.out
    first["reference"] = "not what was said"
    earlier.write_text(json.dumps(report))
    code, out = _eval(capsys, *args, "--against", str(earlier))
    assert code == 2 and "another reference" in out.err
    for bad_args, message in [(["--task", "avsr"], "report of task asr"), (["--snr", "0"], "no 0 dB condition"),
                              (["--noise", "pink"], "report of task asr in white noise")]:
        code, out = _eval(capsys, *args, *bad_args, "--against", str(earlier))
        assert code == 2 and message in out.err, out.err
    (tmp_path / "not.json").write_text("[1, 2]")
    for path in (tmp_path / "none.json", tmp_path / "not.json"):
        code, out = _eval(capsys, *args, "--against", str(path))
        assert code == 2 and "--against" in out.err
