"""Compressed optimizer state (state_dtype="int8" etc., gradkit.core.storage) for every registered optimizer."""
import copy
import warnings

import pytest
import torch

import gradkit
from gradkit.core.storage import MODES, StateStorage
from gradkit.registry import get_optimizer, list_entries

from support import tiny_mlp, train

pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")

NAMES = [e.name for e in list_entries("optimizer")]
# every state of the tiny model is compressed: no minimum size, small blocks
STORAGES = {mode: StateStorage(mode, block_size=16, min_size=0) for mode in MODES}


def make(name, params, storage):
    return get_optimizer(name)(params, state_dtype=storage)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_bit_identical_and_estimate_exact(name, mode):
    storage = STORAGES[mode]
    a = tiny_mlp()
    opt_a = make(name, a.parameters(), storage)
    train(a, opt_a, 3)
    b = copy.deepcopy(a)
    opt_b = make(name, b.parameters(), storage)
    saved = copy.deepcopy(opt_a.state_dict())
    opt_b.load_state_dict(saved)
    train(a, opt_a, 3)
    train(b, opt_b, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert all(torch.isfinite(p).all() for p in a.parameters())
    if mode in ("int8", "int4"):  # codes and scales are saved, never a decoded copy
        keys = {k for entry in saved["state"].values() for k in entry}
        moments = {k for k in keys if k.split("#")[0].endswith(("exp_avg", "exp_avg_sq"))}
        assert all("#" in k for k in moments)
    # per state key; group-level state that a transform creates only while stepping (SGD-SaI's max GSNR,
    # 4 bytes) is not predicted by estimate, whatever the storage
    estimate = gradkit.memory.estimate(tiny_mlp(), lambda ps: make(name, ps, storage), by="key")
    assert estimate == {k: v for k, v in opt_a.state_bytes(by="key").items() if k != "group"}


@pytest.mark.parametrize("mode", ["bfloat16+ecc", "int8", "int4"])
def test_loading_across_storages_converts_with_a_message(mode):
    a = tiny_mlp()
    opt = gradkit.optim.AdamW(a.parameters(), state_dtype=STORAGES[mode])
    train(a, opt, 3)
    plain = gradkit.optim.AdamW(copy.deepcopy(a).parameters())
    with pytest.warns(UserWarning, match="saved with another state storage"):
        plain.load_state_dict(opt.state_dict())
    decoded = plain.state[next(iter(plain.state))]
    assert set(decoded) == {"step", "adam.exp_avg", "adam.exp_avg_sq"}
    back = gradkit.optim.AdamW(copy.deepcopy(a).parameters(), state_dtype=STORAGES[mode])
    with pytest.warns(UserWarning, match="converted to this optimizer's"):
        back.load_state_dict(plain.state_dict())
    plain2 = gradkit.optim.AdamW(copy.deepcopy(a).parameters())
    with pytest.warns(UserWarning):
        plain2.load_state_dict(back.state_dict())
    for p, q, o, r in zip(opt.param_groups[0]["params"], back.param_groups[0]["params"],
                          plain.param_groups[0]["params"], plain2.param_groups[0]["params"]):
        assert opt.state[p].keys() == back.state[q].keys()
        for k in ("adam.exp_avg", "adam.exp_avg_sq"):  # re-encoding a decoded state changes it by rounding only
            x, y = plain.state[o][k], plain2.state[r][k]
            assert (x - y).abs().max() <= 0.02 * x.abs().max() + 1e-30


def test_int8_state_bytes_and_closeness_to_float32():
    torch.manual_seed(0)
    w0 = torch.randn(128, 128)
    results = {}
    for mode in ("float32", "bfloat16", "int8", "int4", "bfloat16+ecc"):
        w = torch.nn.Parameter(w0.clone())
        opt = gradkit.optim.AdamW([w], lr=1e-2, state_dtype=mode)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            w.grad = w.detach() + 0.1 * torch.randn(128, 128, generator=g)
            opt.step()
        results[mode] = (w.detach().clone(), opt.state_bytes() / w.numel())
    ref = results["float32"][0]
    assert results["int8"][1] == pytest.approx(2 + 2 * (4 / 256) + 2 * 16 / w0.numel())
    assert results["int4"][1] == pytest.approx(1 + 2 * (4 / 256) + 2 * 16 / w0.numel())
    errs = {m: (results[m][0] - ref).abs().mean().item() for m in results}  # 20 steps of 0.01 move <= 0.2
    assert errs["bfloat16+ecc"] < errs["bfloat16"] / 100 and errs["bfloat16"] < errs["int8"] < errs["int4"] < 0.05


def test_bad_storage_names_the_argument():
    with pytest.raises(ValueError, match="state_dtype must be"):
        gradkit.optim.AdamW(tiny_mlp().parameters(), state_dtype="int7")
    with pytest.raises(ValueError, match="block_size"):
        StateStorage("int8", block_size=3)


def test_stochastic_rounding_is_unbiased():
    from gradkit.core.rounding import stochastic_round
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.full((10_000,), 1.0 + 2 ** -11) * torch.tensor(3.3)
        y = stochastic_round(x, dtype, g).float()
        se = y.std() / 100
        assert len(y.unique()) == 2 and x.to(dtype).float()[0].item() in y.unique().tolist()  # the two neighbours
        assert (y.mean() - x[0]).abs() <= 3 * se
        assert (y.mean() - x[0]).abs() < (x.to(dtype).float()[0] - x[0]).abs()  # nearest is biased


def test_stochastic_rounding_resumes_bit_identically():
    def run(model, opt, steps):
        g = torch.Generator().manual_seed(len(opt.state))
        for _ in range(steps):
            opt.zero_grad()
            model(torch.randn(4, 8, generator=g).bfloat16()).float().pow(2).mean().backward()
            opt.step()

    torch.manual_seed(0)
    a = torch.nn.Linear(8, 8).bfloat16()
    opt_a = gradkit.optim.AdamW(a.parameters(), lr=1e-3)
    opt_a.set_param_rounding("stochastic", seed=3)
    run(a, opt_a, 3)
    b = copy.deepcopy(a)
    opt_b = gradkit.optim.AdamW(b.parameters(), lr=1e-3)
    opt_b.set_param_rounding("stochastic", seed=3)
    opt_b.load_state_dict(opt_a.state_dict())
    run(a, opt_a, 3)
    run(b, opt_b, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="param_rounding"):
        opt_a.set_param_rounding("up")


def test_fused_step_with_int8_state_agrees_with_unfused():
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(64, 128)) for _ in range(2)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    fused = gradkit.optim.AdamW(ps, state_dtype="int8", fused=True)
    plain = gradkit.optim.AdamW(qs, state_dtype="int8")
    for _ in range(3):
        for p, q in zip(ps, qs):
            p.grad = torch.randn(64, 128)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    assert max((p - q).abs().max().item() for p, q in zip(ps, qs)) < 1e-6
    assert set(fused.state[ps[0]]) == set(plain.state[qs[0]])


def test_weight_prediction_refuses_compressed_state():
    w = torch.nn.Parameter(torch.randn(64, 64))
    opt = gradkit.optim.AdamW([w], state_dtype="int8")
    w.grad = torch.randn(64, 64)
    opt.step()
    with pytest.raises(TypeError, match="state_dtype='int8'"):
        with opt.predicted_weights():
            pass


@pytest.mark.parametrize("name", ["adamw", "adamp"])  # split into whole blocks + remainder / one tensor per param
@pytest.mark.parametrize("mode", ["int8", "int4", "bfloat16+ecc", "bfloat16"])
def test_fused_compressed_state_matches_unfused_and_compiles_once(name, mode):
    from torch._dynamo.utils import counters
    storage = StateStorage(mode, block_size=16, min_size=0)
    torch.manual_seed(0)
    shapes = [(37, 53), (64,), (5,)]  # 1961 = 122 blocks + 9, a whole number of blocks, less than a block
    ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    torch._dynamo.reset()
    counters.clear()
    fused = get_optimizer(name)(ps, state_dtype=storage, fused=True)
    plain = get_optimizer(name)(qs, state_dtype=storage)
    for _ in range(4):
        for p, q in zip(ps, qs):
            p.grad = torch.randn(p.shape)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    # once each: the program that checks the compressed states and the one that writes (bfloat16 cannot fail;
    # 4-bit state is checked and written in one program)
    assert counters["stats"]["unique_graphs"] == (1 if mode in ("bfloat16", "int4") else 2)
    assert max((p - q).abs().max().item() for p, q in zip(ps, qs)) < 1e-6
    for p, q in zip(ps, qs):
        a, b = fused.state[p], plain.state[q]
        assert set(a) == set(b)
        for k in a:
            if k.endswith("#codes"):  # a code may differ by one where float rounding differs
                assert (a[k].int() - b[k].int()).abs().max() <= (1 if mode == "int8" else 16 + 1)
            elif isinstance(a[k], torch.Tensor) and a[k].is_floating_point():
                assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-7), k


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mode", ["int8", "int4", "bfloat16+ecc"])
def test_nonfinite_state_is_refused_and_state_unchanged(mode, fused):
    w = torch.nn.Parameter(torch.ones(64, 65))
    # fused: a param whose state stays float32, which the chain updates in place, is left unchanged too (the
    # unfused step updates such state before the encode refuses: transactional=True restores it)
    params = [w, torch.nn.Parameter(torch.ones(10))] if fused else [w]
    opt = gradkit.optim.AdamW(params, state_dtype=StateStorage(mode, min_size=100), nonfinite="ignore", fused=fused)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    w.grad = torch.full((64, 65), float("inf"))
    _refused_with_state_unchanged(opt, "exp_avg.*inf or nan", params)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_refused_step_names_the_state_that_failed(mode, fused):
    params = [torch.nn.Parameter(torch.ones(64, 65)) for _ in range(2)]
    opt = gradkit.optim.AdamW(params, state_dtype=StateStorage(mode, min_size=0), fused=fused)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    params[0].grad = torch.full((64, 65), 1e30)  # finite, but its square overflows: the second moment fails
    _refused_with_state_unchanged(opt, r"state 'adam\.exp_avg_sq' holds inf", params)


class _Accumulate(gradkit.GradientTransform):
    """Adds each gradient to a state declared non-negative (a second moment): negative gradients break it."""

    name = "accumulate"
    fusable = True
    state_kinds = {"total": "second_moment"}

    def init(self, params, ctx):
        return {"total": [torch.zeros_like(p) for p in params]}

    def update(self, updates, state, params, ctx):
        ctx.ops.add_(state["total"], updates)
        return updates


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_negative_value_in_a_non_negative_state_is_refused_and_state_unchanged(mode, fused):
    w = torch.nn.Parameter(torch.ones(64, 65))
    chain = gradkit.chain(_Accumulate(), gradkit.scale_by_learning_rate())
    opt = gradkit.Optimizer([w], chain, {"lr": 0.1}, state_dtype=StateStorage(mode, min_size=0), fused=fused)
    w.grad = torch.ones(64, 65)
    opt.step()
    w.grad = torch.ones(64, 65)
    w.grad[10, 3] = -5.0  # one negative total in one block
    _refused_with_state_unchanged(opt, "accumulate.total", [w])


def test_the_fused_ecc_flag_refuses_what_the_ecc_encode_refuses():
    """check_entries' flag for a bfloat16+ecc state (a bound on |x|, no rounding) against encode_ecc's check at
    the edge of bfloat16's range."""
    from gradkit.core.quantize import encode_ecc
    from gradkit.core.storage import check_entries
    below, edge = float.fromhex("0x1.fefffep+127"), float.fromhex("0x1.ff0p+127")
    for value, storable in ((below, True), (-below, True), (edge, False), (-edge, False),
                            (float("inf"), False), (float("nan"), False)):
        x = torch.tensor([1.0, value])
        entry = ("ecc", torch.zeros(2, dtype=torch.bfloat16), torch.zeros(2, dtype=torch.int8))
        _, flags = check_entries([(entry, [x])])
        assert bool(flags.all()) == storable, value
        if storable:
            encode_ecc(x)
        else:
            with pytest.raises(ValueError, match="inf or nan"):
                encode_ecc(x)


def _refused_with_state_unchanged(opt, match, params=()):
    """Step ``opt``, which must raise ``ValueError`` matching ``match`` and leave its state, and ``params``,
    as they were; returns the error."""
    before = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.state_dict()["state"])
    with pytest.raises(ValueError, match=match) as caught:
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    after = opt.state_dict()["state"]
    assert all(torch.equal(v, after[i][k]) for i in state for k, v in state[i].items() if isinstance(v, torch.Tensor))
    return caught.value


def _chunked(mode, chunk_elements):
    storage = StateStorage(mode, block_size=16, min_size=0)
    storage.chunk_elements = chunk_elements  # the tiny model's params (128, 16, 48, 3) in several chunks
    storage.slice_elements = chunk_elements  # and a param larger than that in slices of as many values
    return storage


@pytest.mark.parametrize("mode", ["int8", "bfloat16+ecc"])
@pytest.mark.parametrize("name", NAMES)
def test_stepping_in_chunks_changes_nothing(name, mode):
    """An unfused step decodes, steps and encodes a chunk of params at a time (StateStorage.chunks) where no
    statistic spans the group and no group state is kept: bit for bit the step of the whole group."""
    runs = []
    for chunk_elements in (20, 1 << 30):
        model = tiny_mlp()
        opt = make(name, model.parameters(), _chunked(mode, chunk_elements))
        train(model, opt, 3)
        runs.append((list(model.parameters()), opt.state_dict()["state"]))
    (params_a, state_a), (params_b, state_b) = runs
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b))
    for index, entry in state_a.items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, state_b[index][key]), (index, key)


def test_chunks_are_whole_params_in_order():
    storage = _chunked("int8", 100)
    assert storage.chunks([60, 30, 20, 500, 1, 99]) == [[0, 1], [2], [3], [4, 5]]


def test_a_chunk_that_fails_says_which_params_were_stepped_and_transactional_restores_them():
    def setup(transactional):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(32, 16)) for _ in range(2)]
        opt = gradkit.optim.AdamW(params, state_dtype=_chunked("int8", 600))
        opt.transactional = transactional
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
        # finite gradients whose square overflows float32: the second moment of the second chunk is inf
        params[1].grad = torch.full_like(params[1], 1e30)
        return params, opt

    params, opt = setup(transactional=False)
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="exp_avg_sq.*inf or nan") as caught:
        opt.step()
    notes = " ".join(getattr(caught.value, "__notes__", []))
    assert "params before that chunk" in notes and "transactional" in notes
    assert not torch.equal(params[0], before[0]) and torch.equal(params[1], before[1])

    params, opt = setup(transactional=True)
    _refused_with_state_unchanged(opt, "exp_avg_sq.*inf or nan", params)


def test_nonfinite_ignore_steps_the_group_at_once_so_a_failure_changes_nothing():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(32, 16)) for _ in range(2)]
    opt = gradkit.optim.AdamW(params, state_dtype=_chunked("int8", 600), nonfinite="ignore")
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    params[1].grad = torch.full_like(params[1], float("inf"))
    _refused_with_state_unchanged(opt, "inf or nan", params)


def test_fused_program_gets_params_as_block_views():
    """A param with compressed state enters the fused program as views, updated in place there: its whole
    blocks (blocks, block) and, where its last block is partial, that block (1, r) with its own views of the
    codes and scales; a param smaller than a block, or without compressed state, as it is."""
    from gradkit.core.quantize import encode
    from gradkit.core.storage import blocked_views
    p, q, r, t = torch.randn(16, 32), torch.randn(5, 7), torch.randn(64), torch.randn(3, 3)
    grads = [torch.randn_like(x) for x in (p, q, r, t)]
    moment = torch.zeros_like(p)
    states = {"a": [moment, torch.zeros_like(q), None, None], "n": [3, 3, 3, 3]}
    entry = lambda x: ("signed8", *encode(x, "signed8", 16), x.shape)  # noqa: E731
    stored = {"m": [entry(p), entry(q), None, entry(t)]}
    params, grads_v, stored_v, states_v = blocked_views([p, q, r, t], grads, states, stored, 16)
    assert params[0].shape == (32, 16) and grads_v[0].shape == (32, 16) and states_v["a"][0].shape == (32, 16)
    assert stored_v["m"][0] is stored["m"][0]  # whole blocks: the stored codes as they are
    main, rest = params[1]  # 35 values: two whole blocks and 3 values
    assert main.shape == (2, 16) and rest.shape == (1, 3) and [x.shape for x in states_v["a"][1]] == [(2, 16), (1, 3)]
    codes, scales = stored_v["m"][1][1], stored_v["m"][1][2]
    assert [c.shape for c in codes] == [(2, 16), (1, 16)] and [s.shape for s in scales] == [(2,), (1,)]
    assert params[2] is r and params[3] is t  # no compressed state; smaller than a block
    assert states_v["n"] == [3, 3, 3, 3] and states["a"][0] is moment  # the caller's lists are left as they were
    params[0].add_(1.0)
    rest.add_(2.0)
    codes[1].fill_(5)
    states_v["a"][0].add_(2.0)
    assert torch.equal(params[0], p.view(32, 16)) and bool((moment == 2.0).all())  # views: written in place
    assert torch.equal(q.view(-1)[32:], rest.view(-1)) and bool((stored["m"][1][1][2] == 5).all())


@pytest.mark.parametrize("mode", ["int8", "int4", "bfloat16+ecc", "bfloat16"])
def test_a_large_param_is_stepped_in_row_slices_bit_for_bit(mode, monkeypatch):
    """Under an elementwise chain, a param larger than a chunk is decoded, stepped and encoded a slice of
    rows at a time (StateStorage.row_slices): bit for bit the step of the whole param."""
    sliced = []
    row_slices = StateStorage.row_slices

    def spy(self, state, shape):
        bounds = row_slices(self, state, shape)
        sliced.append((tuple(shape), bounds))
        return bounds

    monkeypatch.setattr(StateStorage, "row_slices", spy)
    runs = []
    for chunk_elements in (200, 1 << 30):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s)) for s in [(40, 24), (13, 37), (5, 3, 20)]]
        opt = gradkit.optim.AdamW(params, state_dtype=_chunked(mode, chunk_elements))
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
        runs.append((params, opt.state_dict()["state"]))
    # slices of at most about 200 values, at least two; quantized codes also need each slice to start on a
    # block of 16 values: a row of 37 values only every 16 rows (the whole param), rows of 60 every 4 (then a
    # 60-value tail, which joins the slice before it); a tail under half a slice joins the one before it
    expected = {(40, 24): [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]}
    if mode in ("int8", "int4"):
        expected.update({(13, 37): None, (5, 3, 20): None})
    else:
        expected.update({(13, 37): [(0, 5), (5, 10), (10, 13)], (5, 3, 20): [(0, 2), (2, 5)]})
    assert dict(sliced) == expected
    (params_a, state_a), (params_b, state_b) = runs
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b))
    for index, entry in state_a.items():
        assert set(entry) == set(state_b[index])
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, state_b[index][key]), (index, key)


def test_row_slices_keep_per_param_state_whole():
    storage = _chunked("int8", 200)
    shape = torch.Size([40, 24])
    codes = {"m#codes": torch.zeros(60, 16, dtype=torch.int8), "m#scales": torch.zeros(60), "m#shape": torch.tensor([40, 24])}
    assert storage.row_slices({"step": 1, **codes}, shape) == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    # a per-param statistic (a 0-dim tensor), a list, or a state of another shape: stepped whole
    assert storage.row_slices({"step": 1, **codes, "norm": torch.zeros(())}, shape) is None
    assert storage.row_slices({"step": 1, **codes, "history": [torch.zeros(3)]}, shape) is None
    assert storage.row_slices({"step": 1, **codes, "v": torch.zeros(24)}, shape) is None
    assert storage.row_slices({"step": 1, **codes}, torch.Size([10, 20])) is None  # not larger than a chunk


def test_a_slice_that_fails_says_which_rows_were_stepped_and_transactional_restores_them():
    def setup(transactional):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(64, 16))]
        opt = gradkit.optim.AdamW(params, state_dtype=_chunked("int8", 300))
        opt.transactional = transactional
        params[0].grad = torch.randn_like(params[0])
        opt.step()
        grad = torch.randn_like(params[0])
        grad[40:] = 1e30  # the second moment of the rows of the last slice overflows
        params[0].grad = grad
        return params, opt

    params, opt = setup(transactional=False)
    before = params[0].detach().clone()
    with pytest.raises(ValueError, match="exp_avg_sq.*inf or nan") as caught:
        opt.step()
    notes = " ".join(getattr(caught.value, "__notes__", []))
    assert "its rows before that slice" in notes and "transactional" in notes
    # slices of 18 rows (288 values): rows 0-35 were stepped, the slice of rows 36-53 failed
    assert opt.storage.row_slices(opt.state[params[0]], params[0].shape)[:3] == [(0, 18), (18, 36), (36, 54)]
    assert (params[0][:36] != before[:36]).all() and torch.equal(params[0][36:], before[36:])

    params, opt = setup(transactional=True)
    _refused_with_state_unchanged(opt, "exp_avg_sq.*inf or nan", params)


def test_fused_ecc_is_refused_where_inductor_cannot_keep_the_bf16_rounding(monkeypatch):
    """Without emulate_precision_casts (torch < 2.5) the compiled ecc encode would take x - bf16(x) as 0."""
    import gradkit.core.fused as fused

    monkeypatch.setattr(fused, "_keeps_casts", lambda: False)
    w = torch.nn.Parameter(torch.randn(64, 64))
    opt = gradkit.optim.AdamW([w], state_dtype=StateStorage("bfloat16+ecc", min_size=0), fused=True)
    w.grad = torch.randn_like(w)
    before = w.detach().clone()
    with pytest.raises(ValueError, match="bfloat16\\+ecc.*torch >= 2.5"):
        opt.step()
    assert torch.equal(w, before)
