"""The runner on tiny Llamas: teacher-forced vs generation agreement, log-likelihoods, padding
invariance, cache hits, dtypes, language rule."""

from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pytest
import torch

from frugalmerge.evaluation import (
    Benchmark,
    EvalCache,
    Item,
    LanguageRule,
    TaskSpec,
    accuracy,
    evaluate,
    greedy_generate,
    model_fingerprint,
    score_continuations,
)
from frugalmerge.evaluation.errors import EvaluationError
from frugalmerge.evaluation.prompts import encode_items
from frugalmerge.evaluation.runner import RunContext

WORDS = ["the", "cat", "dog", "plus", "minus", "is", "what", "answer", "=", "+", "-", "."]
PROMPTS = ["what is 1 plus 2", "the cat", "the dog is what", "1 2 3 4 5 6 7",
           "what is the answer", "cat dog cat dog cat", "9", "the answer is"]


@pytest.fixture(scope="module")
def random_model(tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_models["model_a"], dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(tiny_models["model_a"])


@pytest.fixture(scope="module")
def trained_model():
    """A tiny Llama trained for a few seconds to answer ``what is a plus b`` with
    ``the answer is c`` and end of text (so greedy decoding stops by itself)."""
    from transformers import LlamaForCausalLM

    from frugalmerge.zoo.tiny import build_word_tokenizer, tiny_llama_config

    tok = build_word_tokenizer(WORDS)
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(len(tok), hidden_size=48, num_layers=2,
                                               num_heads=4))
    pairs = [(a, b) for a in range(1, 5) for b in range(1, 5) if a + b < 10]
    texts = [f"what is {a} plus {b} the answer is {a + b}" for a, b in pairs]
    seqs = [tok(t)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    labels = ids.masked_fill(ids == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    items = [Item(id=f"p{a}{b}", prompt=f"what is {a} plus {b}", answer=f"the answer is {a + b}")
             for a, b in pairs]
    return model.eval(), tok, items


def _ctx(model, tok, bench, batch_size=4):
    return RunContext(model=model, tokenizer=tok, benchmark=bench, batch_size=batch_size,
                      advance=lambda n: None)


def test_greedy_generation_matches_hf_generate(random_model):
    model, tok = random_model
    bench = Benchmark("g", TaskSpec(type="generative_exact"), [])
    prompts = [tok(p)["input_ids"] for p in PROMPTS]
    ours = greedy_generate(_ctx(model, tok, bench, batch_size=3), prompts, max_new_tokens=6)
    for prompt, (ids, _) in zip(prompts, ours):
        ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                             dtype=torch.long), max_new_tokens=6, do_sample=False,
                             pad_token_id=0)[0, len(prompt):].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id)]
        assert ids == ref


def test_generated_continuation_is_judged_correct_teacher_forced(random_model):
    """Greedy tokens scored teacher-forced are all argmax; one changed token is not."""
    model, tok = random_model
    bench = Benchmark("g", TaskSpec(type="generative_exact"), [])
    ctx = _ctx(model, tok, bench)
    prompts = [tok(p)["input_ids"] for p in PROMPTS]
    gens = greedy_generate(ctx, prompts, max_new_tokens=5)
    rows = [(p, ids) for p, (ids, _) in zip(prompts, gens) if ids]
    assert len(rows) >= 6
    _, greedy = score_continuations(ctx, rows)
    assert greedy.all()
    wrong = [(p, ids[:-1] + [(ids[-1] + 1) % len(tok)]) for p, ids in rows]
    _, greedy_wrong = score_continuations(ctx, wrong)
    assert not greedy_wrong.any()


def test_loglikelihood_equals_unpadded_manual_computation(random_model):
    model, tok = random_model
    ctx = _ctx(model, tok, Benchmark("g", TaskSpec(type="multiple_choice"), []), batch_size=8)
    rows = [(tok(p)["input_ids"], tok(" dog is", add_special_tokens=False)["input_ids"])
            for p in PROMPTS]
    logprob, _ = score_continuations(ctx, rows)
    for (context, cont), ours in zip(rows, logprob):
        full = torch.tensor([context + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0].float(), -1)
        manual = sum(logp[len(context) - 1 + j, t].item() for j, t in enumerate(cont))
        assert ours == pytest.approx(manual, abs=1e-4)


def test_padding_invariance_batch_vs_single(random_model):
    model, tok = random_model
    items = [Item(id=f"x{i}", prompt=p, answer="the cat", choices=("the cat", "dog", "1 2 3"))
             for i, p in enumerate(PROMPTS)]
    bench = Benchmark("pad", TaskSpec(type="multiple_choice"), items)
    enc = encode_items(bench, tok, items)
    rows = [(e.prompt, t) for e in enc for t in e.targets]
    single = score_continuations(_ctx(model, tok, bench, batch_size=1), rows)
    batched = score_continuations(_ctx(model, tok, bench, batch_size=24), rows)
    assert single[0] == pytest.approx(batched[0], abs=1e-4)
    assert (single[1] == batched[1]).all()
    for task in ("multiple_choice", "teacher_forced_exact", "generative_exact"):
        b = bench.with_task(TaskSpec(type=task, **({"max_new_tokens": 4} if task.startswith("generative") else {})))
        single_rows = evaluate(model, tok, b, batch_size=1)
        assert single_rows == evaluate(model, tok, b, batch_size=5, max_batch_tokens=0)
        assert single_rows == evaluate(model, tok, b)  # automatic batching
        assert single_rows == evaluate(model, tok, b, batch_size=64, max_batch_tokens=30)


def test_trained_model_generation_and_teacher_forcing_agree(trained_model):
    model, tok, items = trained_model
    wrong = [Item(id=it.id + "w", prompt=it.prompt, answer=it.answer[:-1] + "0") for it in items]
    allitems = items + wrong
    gen = evaluate(model, tok, Benchmark("t", TaskSpec(type="generative_exact", max_new_tokens=8),
                                         allitems))
    tf = evaluate(model, tok, Benchmark("t", TaskSpec(type="teacher_forced_exact"), allitems))
    assert gen == tf
    assert accuracy({k: gen[k] for k in (it.id for it in items)})[0] >= 0.9
    assert sum(gen[w.id] for w in wrong) == 0
    num = evaluate(model, tok, Benchmark("n", TaskSpec(type="generative_numeric",
                                                        max_new_tokens=8), items))
    assert num == {it.id: gen[it.id] for it in items}
    # Stop strings cut generation: stopping at "is" leaves no number to extract.
    cut = evaluate(model, tok, Benchmark("n", TaskSpec(type="generative_numeric", stop=(" is",),
                                                        max_new_tokens=8), items))
    assert sum(cut.values()) == 0


def test_generation_stops_when_done(trained_model):
    model, tok, items = trained_model
    ctx = _ctx(model, tok, Benchmark("d", TaskSpec(type="generative_exact"), items))
    prompts = [tok(it.prompt)["input_ids"] for it in items]
    full = greedy_generate(ctx, prompts, max_new_tokens=8)
    early = greedy_generate(ctx, prompts, max_new_tokens=8, done=lambda text: "answer" in text)
    for (ids, text), (short, short_text) in zip(full, early):
        if text.startswith("the answer"):
            assert short == ids[:2] and short_text == "the answer"


@pytest.mark.parametrize("prune", [True, False])
def test_rows_finishing_at_different_steps_leave_the_batch_correctly(random_model, monkeypatch,
                                                                     prune):
    """Finished rows are dropped from the batch and the KV cache (or, with a cache that cannot
    drop rows, ignored); the others continue exactly."""
    model, tok = random_model
    if not prune:
        from transformers import cache_utils

        monkeypatch.delattr(cache_utils.Cache, "reorder_cache")
    ctx = _ctx(model, tok, Benchmark("d", TaskSpec(type="generative_exact"), []), batch_size=8)
    prompts = [tok(p)["input_ids"] for p in PROMPTS]

    def done(text: str) -> bool:
        return any(w in text.split() for w in ("cat", "dog", "the", "7"))

    full = greedy_generate(ctx, prompts, max_new_tokens=10)
    early = greedy_generate(ctx, prompts, max_new_tokens=10, done=done)
    stops = set()
    for (ids, _), (short, _) in zip(full, early):
        expected = ids
        for k in range(1, len(ids) + 1):
            if done(tok.decode(ids[:k], skip_special_tokens=True)):
                expected = ids[:k]
                break
        assert short == expected
        stops.add(len(short))
    assert len(stops) >= 3  # rows really finished at different steps


def test_multiple_choice_picks_the_trained_answer(trained_model):
    model, tok, items = trained_model
    mc = [Item(id=it.id, prompt=it.prompt, answer="1",
               choices=("the answer is 0", it.answer, "the cat is dog")) for it in items]
    scores = evaluate(model, tok, Benchmark("mc", TaskSpec(type="multiple_choice"), mc))
    assert accuracy(scores)[0] >= 0.9
    norm = Benchmark("mc", TaskSpec(type="multiple_choice", choice_normalization="length"), mc)
    assert accuracy(evaluate(model, tok, norm))[0] >= 0.9


def test_graded_scores(trained_model):
    model, tok, items = trained_model
    half = [Item(id=it.id, prompt=it.prompt, answer="the answer cat dog") for it in items[:4]]
    tf = Benchmark("g", TaskSpec(type="teacher_forced_exact", graded=True), items[:4] + [
        Item(id=h.id + "h", prompt=h.prompt, answer=h.answer) for h in half])
    graded = evaluate(model, tok, tf)
    binary = evaluate(model, tok, tf.with_task(TaskSpec(type="teacher_forced_exact")))
    for key, value in graded.items():
        assert (value == 1.0) == (binary[key] == 1.0) and 0.0 <= value <= 1.0
    # "the answer" right (2 of 5 tokens incl. end of text), "cat dog </s>" wrong
    assert [graded[h.id + "h"] for h in half] == [0.4] * 4
    mc = [Item(id=it.id, prompt=it.prompt, answer="1", choices=("the answer is 0", it.answer))
          for it in items]
    probs = evaluate(model, tok, Benchmark("mc", TaskSpec(type="multiple_choice", graded=True), mc))
    wins = evaluate(model, tok, Benchmark("mc", TaskSpec(type="multiple_choice"), mc))
    assert all((probs[k] > 0.5) == (wins[k] == 1.0) for k in probs)
    with pytest.raises(ValueError, match="graded"):
        TaskSpec(type="generative_exact", graded=True)


def test_token_probability_is_the_geometric_mean_of_reference_token_probabilities(trained_model):
    model, tok, items = trained_model
    task = TaskSpec(type="teacher_forced_exact", graded=True, graded_measure="token_probability")
    bench = Benchmark("p", task, items[:5] + [Item(id="wrong", prompt=items[0].prompt, answer="cat dog")])
    probs = evaluate(model, tok, bench, batch_size=3)
    binary = evaluate(model, tok, bench.with_task(TaskSpec(type="teacher_forced_exact")))
    for e, it in zip(encode_items(bench, tok, bench.items), bench.items):
        full = torch.tensor([list(e.prompt) + list(e.targets[0])])
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0].float(), -1)
        cont = e.targets[0]
        manual = sum(logp[len(e.prompt) - 1 + j, t].item() for j, t in enumerate(cont)) / len(cont)
        assert probs[it.id] == pytest.approx(float(np.exp(manual)), rel=1e-4)
    assert probs["wrong"] < min(probs[it.id] for it in items[:5] if binary[it.id] == 1.0)
    # the default measure keeps the settings hash of tasks written before the field existed
    plain = TaskSpec(type="teacher_forced_exact")
    before = {k: v for k, v in plain.model_dump(mode="json").items() if k != "graded_measure"}
    assert plain.settings_hash() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert plain.settings_hash() != task.settings_hash()
    with pytest.raises(ValueError, match="graded_measure"):
        TaskSpec(type="teacher_forced_exact", graded_measure="token_probability")
    # overrides are validated like a new spec
    assert plain.with_overrides({"graded": True, "graded_measure": "token_probability"}) == task
    with pytest.raises(ValueError, match="graded_measure"):
        plain.with_overrides({"graded_measure": "token_probability"})


def test_language_rule_on_generated_answers(trained_model):
    model, tok, items = trained_model
    plain = evaluate(model, tok, Benchmark("n", TaskSpec(type="generative_numeric",
                                                          max_new_tokens=8), items))
    en = Benchmark("n", TaskSpec(type="generative_numeric", max_new_tokens=8,
                                 language_rule=LanguageRule(target="en")), items)
    de = Benchmark("n", TaskSpec(type="generative_numeric", max_new_tokens=8,
                                 language_rule=LanguageRule(target="de")), items)
    assert evaluate(model, tok, en) == plain and sum(plain.values()) > 0
    assert sum(evaluate(model, tok, de).values()) == 0  # "the answer is 5" is English
    # a target the builtin detector cannot recognise (Finnish): every response would fail, so
    # it is refused before anything is generated; the benchmark's own detector learns it
    fi = Benchmark("n", TaskSpec(type="generative_numeric", max_new_tokens=8,
                                 language_rule=LanguageRule(target="fi")), items)
    with pytest.raises(EvaluationError, match="the 'builtin' detector cannot recognise 'fi'"):
        evaluate(model, tok, fi)
    own = [Item(id=f"f{i}", prompt=f"kuinka monta omenaa {i}", answer=str(i), language="fi") for i in range(3)]
    learnt = Benchmark("f", TaskSpec(type="generative_exact", max_new_tokens=2,
                                     language_rule=LanguageRule(detector="benchmark")), own)
    assert set(evaluate(model, tok, learnt)) == {"f0", "f1", "f2"}


def test_token_budget_batching():
    from frugalmerge.evaluation.runner import _batches

    lengths = [30, 30, 20, 10, 10, 10, 100]
    order = sorted(range(7), key=lambda i: -lengths[i])  # 6, 0, 1, 2, 3, 4, 5
    assert list(_batches(order, lengths, 3, None)) == [[6, 0, 1], [2, 3, 4], [5]]
    # budget 60 padded tokens: the 100-token row alone, then 2 x 30, then 20+10+10 padded to 20
    assert list(_batches(order, lengths, 8, 60)) == [[6], [0, 1], [2, 3, 4], [5]]


def test_batching_resolution(random_model):
    from frugalmerge.evaluation.runner import AUTO_BATCHING

    model, tok = random_model
    bench = Benchmark("b", TaskSpec(type="teacher_forced_exact"), [])
    ctx = RunContext(model=model, tokenizer=tok, benchmark=bench, batch_size=None,
                     advance=lambda n: None)
    assert ctx.batching("score") == AUTO_BATCHING[("cpu", "score")]
    ctx.batch_size = 128
    assert ctx.batching("score") == (128, AUTO_BATCHING[("cpu", "score")][1])
    ctx.max_batch_tokens = 0
    assert ctx.batching("generate") == (128, None)


def test_subsets_reuse_the_parents_tokenisation(random_model, monkeypatch):
    model, tok = random_model
    from frugalmerge.evaluation import prompts

    items = [Item(id=f"x{i}", prompt=p, answer="the cat") for i, p in enumerate(PROMPTS)]
    bench = Benchmark("t", TaskSpec(type="teacher_forced_exact"), items)
    calls = []
    real = prompts._encode
    monkeypatch.setattr(prompts, "_encode", lambda b, t, its, chat: calls.append(len(its)) or
                        real(b, t, its, chat))
    evaluate(model, tok, bench, ["x1", "x2"])
    evaluate(model, tok, bench.subset(["x2", "x3"]))
    evaluate(model, tok, bench.subset(["x1", "x3"]), ["x1"])
    assert calls == [2, 1]  # x1, x2 once; then only x3


def test_cache_hits_and_settings(random_model):
    model, tok = random_model
    items = [Item(id=f"x{i}", prompt=p, answer="the cat") for i, p in enumerate(PROMPTS)]
    bench = Benchmark("c", TaskSpec(type="teacher_forced_exact"), items)
    cache = EvalCache()
    first = evaluate(model, tok, bench, ["x1", "x2", "x3"], cache=cache)
    assert cache.stats() == {"entries": 3, "hits": 0, "misses": 3}
    fp = model_fingerprint(model)
    again = evaluate(model, tok, bench, ["x3", "x1", "x4"], cache=cache, fingerprint=fp)
    assert list(again) == ["x3", "x1", "x4"] and again["x1"] == first["x1"]
    assert cache.hits == 2 and cache.misses == 4  # the default fingerprint is the weights hash
    other = bench.with_task(TaskSpec(type="teacher_forced_exact", append_eos=False))
    evaluate(model, tok, other, ["x1"], cache=cache, fingerprint=fp)
    assert cache.misses == 5  # other settings, other key
    evaluate(model, tok, bench, ["x1"], cache=cache, fingerprint="another-model")
    assert cache.misses == 6


def test_fingerprint_tracks_weights(random_model):
    model, _ = random_model
    before = model_fingerprint(model)
    with torch.no_grad():
        p = next(model.parameters())
        saved = p[0, 0].clone()
        p[0, 0] += 1.0
        changed = model_fingerprint(model)
        p[0, 0] = saved
    assert changed != before and model_fingerprint(model) == before


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_models_run(trained_model, dtype):
    model, tok, items = trained_model
    low = type(model)(model.config).to(dtype)
    low.load_state_dict({k: v.to(dtype) for k, v in model.state_dict().items()})
    low.eval()
    tf = evaluate(low, tok, Benchmark("t", TaskSpec(type="teacher_forced_exact"), items))
    gen = evaluate(low, tok, Benchmark("t", TaskSpec(type="generative_exact", max_new_tokens=8),
                                       items))
    assert all(v in (0.0, 1.0) for v in tf.values())
    assert accuracy(tf)[0] >= 0.75 and accuracy(gen)[0] >= 0.75
    assert not math.isnan(accuracy(tf)[1])


def test_chat_template_prompts(trained_model):
    model, tok, items = trained_model
    import copy

    chat_tok = copy.deepcopy(tok)
    # Role markers spelled with words of the tiny vocabulary: user -> "cat", assistant -> "dog".
    chat_tok.chat_template = ("{% for m in messages %}{{ 'cat' if m['role'] == 'user' else 'dog' }}"
                              " {{ m['content'] }} {% endfor %}"
                              "{% if add_generation_prompt %}dog{% endif %}")
    bench = Benchmark("c", TaskSpec(type="teacher_forced_exact", num_fewshot=1), items)
    enc = encode_items(bench, chat_tok, items[:1])[0]
    text = chat_tok.decode(enc.prompt)
    assert re.fullmatch(r"cat what is \d plus \d dog the answer is \d cat what is 1 plus 1 dog", text)
    plain = Benchmark("c", TaskSpec(type="teacher_forced_exact", use_chat_template=False), items)
    assert encode_items(plain, chat_tok, items[:1])[0].prompt == tuple(tok(items[0].prompt)["input_ids"])


def test_zoo_format_scores_the_training_sequence(tmp_path):
    """A zoo-style benchmark line (problem ending in "=", answer = the equation line) scores
    exactly the sequence the zoo trains on: ``tokenizer(f"{problem} {equation}") + [eos]``."""
    import json

    from frugalmerge.evaluation import load_benchmark
    from frugalmerge.zoo.tiny import build_word_tokenizer

    tok = build_word_tokenizer(["anna", "has", "apples", "she", "gets", "more", "how", "many",
                                "does", "have", "?", ".", "=", "+"])
    rows = [{"id": f"math_en-search-{i:04d}", "language": "en",
             "prompt": f"anna has {a} apples . she gets {b} more . how many apples does she have ? =",
             "answer": f"{a} + {b} = {a + b}", "metadata": {"result": a + b, "split": "search"}}
            for i, (a, b) in enumerate([(3, 4), (12, 7), (1, 19)])]
    path = tmp_path / "math_en" / "search.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = load_benchmark(path, task={"type": "teacher_forced_exact"})
    assert bench.name == "math_en-search" and bench.items[1].metadata["result"] == 19
    for item, enc in zip(bench, encode_items(bench, tok, list(bench))):
        trained = tok(f"{item.prompt} {item.answer}")["input_ids"] + [tok.eos_token_id]
        assert list(enc.prompt) + list(enc.targets[0]) == trained
        assert tok.unk_token_id not in trained
        assert enc.targets[0][-1] == tok.eos_token_id


@pytest.fixture(scope="module")
def bpe_model():
    """A random tiny Llama with a byte-level BPE tokenizer trained in-test (as real models use)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from frugalmerge.zoo.tiny import tiny_llama_config

    corpus = ["the cat sat on the mat", "the answer is 12", "what is 7 plus 5",
              "she has three apples and buys two more", "cats and dogs are friends"] * 20
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", padding_side="left")
    torch.manual_seed(3)
    model = LlamaForCausalLM(tiny_llama_config(len(fast), hidden_size=32, num_layers=2,
                                               num_heads=2)).eval()
    return model, fast


def test_bpe_tokenizer_continuations_and_generation(bpe_model):
    model, tok = bpe_model
    items = [Item(id=f"b{i}", prompt=p, answer=a, choices=(a, "dogs", "the mat"))
             for i, (p, a) in enumerate([("what is 7 plus 5", "the answer is 12"),
                                         ("the cat sat on", "the mat"),
                                         ("she has three", "apples and buys two more")])]
    bench = Benchmark("bpe", TaskSpec(type="teacher_forced_exact"), items)
    for item, enc in zip(items, encode_items(bench, tok, items)):
        whole = tok(f"{item.prompt} {item.answer}")["input_ids"]
        assert list(enc.prompt) + list(enc.targets[0][:-1]) == whole
        assert enc.targets[0][-1] == tok.eos_token_id
    prompts = [tok(it.prompt)["input_ids"] for it in items]
    ours = greedy_generate(_ctx(model, tok, bench, batch_size=2), prompts, max_new_tokens=5)
    for prompt, (ids, text) in zip(prompts, ours):
        ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                             dtype=torch.long), max_new_tokens=5, do_sample=False,
                             pad_token_id=0)[0, len(prompt):].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id)]
        assert ids == ref and text == tok.decode(ids, skip_special_tokens=True)
    for task in ("teacher_forced_exact", "multiple_choice", "generative_exact"):
        b = bench.with_task(TaskSpec(type=task, **({"max_new_tokens": 5} if task.startswith("generative") else {})))
        assert evaluate(model, tok, b, batch_size=1) == evaluate(model, tok, b, batch_size=3)


def _stale_check(model, tok, task: TaskSpec, before: list[Item], after: list[Item]) -> None:
    """``item 0``'s score after editing only the *other* items (its few-shot examples) must be
    the fresh score, not the cached one of the old prompt."""
    cache = EvalCache()
    old = evaluate(model, tok, Benchmark("s", task, before), ["x0"], cache=cache)
    fresh = evaluate(model, tok, Benchmark("s", task, after), ["x0"])
    again = evaluate(model, tok, Benchmark("s", task, after), ["x0"], cache=cache)
    assert old["x0"] != fresh["x0"]  # the edit changes item 0's prompt
    assert again == fresh and cache.misses == 2


def test_cache_key_tracks_the_text_of_fewshot_examples(random_model):
    model, tok = random_model
    task = TaskSpec(type="teacher_forced_exact", graded=True, graded_measure="token_probability",
                    num_fewshot=1)
    before = [Item(id=f"x{i}", prompt=p, answer="the cat") for i, p in enumerate(PROMPTS[:3])]
    after = [before[0], *(Item(id=it.id, prompt=it.prompt + " dog dog", answer="what is")
                          for it in before[1:])]
    _stale_check(model, tok, task, before, after)


def test_cache_key_tracks_metadata_shown_by_template_and_fewshot_answer(random_model):
    model, tok = random_model
    items = [Item(id=f"x{i}", prompt=p, answer="the cat", metadata={"hint": "cat", "sol": "dog"})
             for i, p in enumerate(PROMPTS[:3])]

    def edited(key: str) -> list[Item]:
        return [items[0], *(it.model_copy(update={"metadata": {**it.metadata, key: "the the"}})
                            for it in items[1:])]

    graded = {"type": "teacher_forced_exact", "graded": True,
              "graded_measure": "token_probability", "num_fewshot": 1}
    _stale_check(model, tok, TaskSpec(**graded, prompt_template="{hint} {prompt}"), items,
                 edited("hint"))
    _stale_check(model, tok, TaskSpec(**graded, fewshot_answer_field="sol"), items, edited("sol"))


def test_cache_key_tracks_the_pool_a_trained_language_detector_learns_from():
    from frugalmerge.evaluation.prompts import _detector_hash

    items = [Item(id=f"x{i}", prompt=p, answer="1") for i, p in enumerate(PROMPTS[:3])]
    edited = [items[0], Item(id="x1", prompt="der die das", answer="1", language="de"), items[2]]
    rule = {"type": "generative_exact", "language_rule": {"detector": "benchmark"}}
    assert (_detector_hash(Benchmark("d", rule, items))
            != _detector_hash(Benchmark("d", rule, edited)))
    assert _detector_hash(Benchmark("d", "generative_exact", items)) == ""


def test_an_unregistered_detector_is_reported_without_quotes(monkeypatch):
    from frugalmerge.evaluation.errors import EvaluationError
    from frugalmerge.evaluation.language import DETECTORS
    from frugalmerge.evaluation.runner import _language_filter

    monkeypatch.setitem(DETECTORS, "gone", DETECTORS["builtin"])
    task = TaskSpec(type="generative_exact", language_rule=LanguageRule(detector="gone"))
    monkeypatch.delitem(DETECTORS, "gone")  # unregistered after the settings were validated
    bench = Benchmark("g", task, [Item(id="a", prompt="the cat", answer="cat")])
    with pytest.raises(EvaluationError) as err:
        _language_filter(_ctx(None, None, bench), bench.items, ["cat"], [1.0])
    assert str(err.value).startswith("unknown language detector 'gone'")
