"""ProgressiveMask: nested levels, exact restore, moving up and down, overrides, queries and errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fixtures_weights import weights_hash
from sdprobe.architecture import component_numel, select
from sdprobe.prune import MagnitudeScorer, OwlScorer, ProgressiveMask, RandomScorer
from sdprobe.prune.state import TensorState

GROUPS = ["matrix", "row", "global", "nm:4"]
STORES = [None, "disk"]  # beside the weights, a temporary file


def module_tree(spec: dict[str, nn.Module]) -> nn.Module:
    """A module whose submodules sit at the given dotted names (so selectors and ``describe`` see SD names)."""
    root = nn.Module()
    for dotted, module in spec.items():
        parent = root
        *path, leaf = dotted.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, module)
    return root


def toy_pipe(seed: int = 0) -> SimpleNamespace:
    """A two-component "pipeline" of plain Linear/Conv2d modules named like SD's, with random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = module_tree({
            f"text_model.encoder.layers.{i}.{name}": module
            for i in range(2)
            for name, module in (("self_attn.q_proj", nn.Linear(8, 8)), ("mlp.fc1", nn.Linear(8, 12)),
                                 ("mlp.fc2", nn.Linear(12, 8)))
        })
        unet = module_tree({
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q": nn.Linear(8, 8),
            "down_blocks.0.resnets.0.conv1": nn.Conv2d(4, 4, 3),
            "mid_block.attentions.0.transformer_blocks.0.ff.net.0": nn.Linear(8, 16),
            "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k": nn.Linear(16, 8),
        })
    return SimpleNamespace(text_encoder=text, unet=unet)


def snapshot(refs) -> dict[str, torch.Tensor]:
    return {r.qualified_name: r.weight.detach().clone() for r in refs}


def mask(refs, group="matrix", **kw) -> ProgressiveMask:
    return ProgressiveMask(refs, MagnitudeScorer().scores(refs), group=group, **kw)


@pytest.fixture
def pipe():
    return toy_pipe()


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("group", GROUPS)
def test_masks_are_nested_and_prune_the_lowest_scores(pipe, group, store):
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    scores = MagnitudeScorer().scores(refs)
    levels = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9]
    with ProgressiveMask(refs, scores, group=group, store=store) as m:
        for ref in refs:
            name = ref.qualified_name
            sets = [set(m.pruned_indices(name, s).tolist()) for s in levels]
            assert all(a <= b for a, b in zip(sets, sets[1:]))
            if group == "matrix":  # exactly the floor(s * n) lowest |w| of the tensor
                for s, pruned in zip(levels, sets):
                    k = int(s * ref.numel + 1e-6)
                    assert pruned == set(torch.argsort(scores[name].reshape(-1))[:k].tolist())
        if group == "global":  # one threshold: pruned entries all score below the kept ones, across tensors
            m.set_sparsity(0.5)
            pruned = torch.cat([scores[r.qualified_name].reshape(-1)[r.weight.reshape(-1) == 0] for r in refs])
            kept = torch.cat([scores[r.qualified_name].reshape(-1)[r.weight.reshape(-1) != 0] for r in refs])
            assert pruned.numel() == int(0.5 * m.numel) and pruned.max() < kept.min()


def test_row_group_prunes_the_lowest_half_of_each_row(pipe):
    refs = select(pipe, "text_encoder.mlp")
    original = snapshot(refs)
    with mask(refs, "row") as m:
        m.set_sparsity(0.5)
        for r in refs:
            w, a = r.weight.detach(), original[r.qualified_name].abs()
            pruned = w == 0
            assert (pruned.sum(1) == w.shape[1] // 2).all()
            lowest_kept = torch.where(pruned, torch.inf, a).min(1).values
            highest_pruned = torch.where(pruned, a, -torch.inf).max(1).values
            assert (highest_pruned < lowest_kept).all()


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("group", GROUPS)
def test_moving_up_and_down_equals_a_fresh_mask(pipe, group, store):
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    path = [0.3, 0.5, 0.45, 0.05, 0.9, 0.0, 0.35, 0.35, 0.6]
    fresh = {}
    for s in set(path):
        with mask(refs, group) as m:
            m.set_sparsity(s)
            fresh[s] = snapshot(refs)
    with mask(refs, group, store=store) as m:
        for s in path:
            m.set_sparsity(s)
            assert m.sparsity == s
            now = snapshot(refs)
            assert all(torch.equal(now[n], fresh[s][n]) for n in now)


def test_owl_allocation_moves_up_and_down_like_a_fresh_mask(pipe):
    refs = select(pipe, ["text_encoder"])
    scorer = OwlScorer(MagnitudeScorer(), hyper_m=1.5)
    scores = scorer.scores(refs)
    fresh = {}
    for s in (0.2, 0.6):
        with ProgressiveMask(refs, scores, allocation=scorer.allocation) as m:
            m.set_sparsity(s)
            fresh[s] = snapshot(refs)
    with ProgressiveMask(refs, scores, allocation=scorer.allocation) as m:
        for s in (0.6, 0.2, 0.6):
            m.set_sparsity(s)
            assert all(torch.equal(v, fresh[s][n]) for n, v in snapshot(refs).items())


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("how", ["normal", "exception", "keyboard", "inside_override"])
@pytest.mark.parametrize("group", ["matrix", "global"])
def test_exit_restores_every_weight_bit_exactly(pipe, how, group, store):
    before = weights_hash(pipe)
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    raised = {"normal": None, "exception": RuntimeError, "keyboard": KeyboardInterrupt,
              "inside_override": KeyboardInterrupt}[how]
    try:
        with mask(refs, group, store=store) as m:
            m.set_sparsity(0.7)
            m.set_sparsity(0.4)
            assert weights_hash(pipe) != before
            if how == "inside_override":
                with m.override(prune=m.candidates(0.4, 0.9), restore=m.candidates(0.1, 0.4)):
                    raise KeyboardInterrupt
            if raised is not None:
                raise raised
    except (RuntimeError, KeyboardInterrupt) as exc:
        assert raised is not None and isinstance(exc, raised)
    assert weights_hash(pipe) == before


def test_restore_after_an_interrupted_level_change(pipe, monkeypatch):
    before = weights_hash(pipe)
    refs = select(pipe, "text_encoder")
    calls = {"n": 0}
    real = TensorState.matrix

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 3:  # the third tensor of the next level change: zeroed, then interrupted
            return SimpleNamespace(scatter_=lambda *a: (real(self).scatter_(*a), interrupt()))
        return real(self)

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with mask(refs) as m:
            m.set_sparsity(0.3)
            monkeypatch.setattr(TensorState, "matrix", flaky)
            try:
                m.set_sparsity(0.8)
                raise AssertionError("the level change was not interrupted")
            except KeyboardInterrupt:
                with pytest.raises(RuntimeError, match="interrupted"):
                    m.set_sparsity(0.1)
                monkeypatch.setattr(TensorState, "matrix", real)
                raise
    assert weights_hash(pipe) == before


def test_invalid_arguments_get_clear_errors(pipe):
    refs = select(pipe, "text_encoder")
    scores = MagnitudeScorer().scores(refs)
    with pytest.raises(ValueError, match="matrix, row, global, nm:M"):
        ProgressiveMask(refs, scores, group="column")
    with pytest.raises(ValueError, match="max_sparsity"):
        ProgressiveMask(refs, scores, max_sparsity=1.0)
    with pytest.raises(ValueError, match="no scores"):
        ProgressiveMask(refs, {})
    with pytest.raises(ValueError, match="shape"):
        ProgressiveMask(refs, {**scores, refs[0].qualified_name: torch.zeros(3)})
    with pytest.raises(ValueError, match="NaN"):
        ProgressiveMask(refs, {**scores, refs[0].qualified_name: scores[refs[0].qualified_name] * float("nan")})
    with pytest.raises(ValueError, match="global"):
        ProgressiveMask(refs, scores, group="global", allocation=lambda s: {})
    m = ProgressiveMask(refs, scores, max_sparsity=0.5)
    with pytest.raises(RuntimeError, match="with"):
        m.set_sparsity(0.2)
    with m:
        for bad in (-0.1, 1.0, 1.5):
            with pytest.raises(ValueError, match=r"\[0, 1\)"):
                m.set_sparsity(bad)
        with pytest.raises(ValueError, match="max_sparsity"):
            m.set_sparsity(0.6)
        with pytest.raises(ValueError, match="not in this mask"):
            m.pruned_indices("unet.nothing.weight", 0.2)
        with pytest.raises(ValueError, match="lo"):
            m.candidates(0.4, 0.2)
    with pytest.raises(RuntimeError, match="once"):
        m.__enter__()


def test_a_decreasing_allocation_is_rejected(pipe):
    refs = select(pipe, "text_encoder")
    names = [r.qualified_name for r in refs]
    with mask(refs, allocation=lambda s: {n: (0.9 - s) for n in names}, max_sparsity=0.5) as m:
        with pytest.raises(ValueError, match="must not decrease"):
            m.set_sparsity(0.2)
    with pytest.raises(ValueError, match="no sparsity for"):
        with mask(refs, allocation=lambda s: {names[0]: s}):
            pass


def test_masks_on_disjoint_weights_compose_and_overlapping_ones_are_refused(pipe):
    before = weights_hash(pipe)
    text, unet = select(pipe, "text_encoder"), select(pipe, "unet")
    with mask(text) as mt, mask(unet) as mu:
        mt.set_sparsity(0.475)
        mu.set_sparsity(0.35)
        assert mt.stats(pipe)["scope_pruned"] == pytest.approx(sum(int(0.475 * r.numel) for r in text) / mt.numel)
        assert mu.stats(pipe)["scope_pruned"] == pytest.approx(sum(int(0.35 * r.numel) for r in unet) / mu.numel)
        with pytest.raises(ValueError, match="another ProgressiveMask"):
            with mask(text[:1]):
                pass
    assert weights_hash(pipe) == before
    with mask(text[:1]):  # free again after exit
        pass


def test_candidates_and_overrides(pipe):
    refs = select(pipe, ["text_encoder", "unet"])
    fresh = {}
    for s in (0.4, 0.5, 0.6):
        with mask(refs) as m:
            m.set_sparsity(s)
            fresh[s] = snapshot(refs)
    with mask(refs) as m:
        m.set_sparsity(0.5)
        between = m.candidates(0.4, 0.5)
        for r in refs:
            n = r.qualified_name
            expected = set(m.pruned_indices(n, 0.5).tolist()) - set(m.pruned_indices(n, 0.4).tolist())
            assert set(between[n].tolist()) == expected
        with m.override(restore=between):  # back to the 0.4 mask
            assert all(torch.equal(v, fresh[0.4][n]) for n, v in snapshot(refs).items())
            with pytest.raises(RuntimeError, match="override"):
                m.set_sparsity(0.3)
            with m.override(prune=m.candidates(0.4, 0.6)):  # nested: up to the 0.6 mask
                assert all(torch.equal(v, fresh[0.6][n]) for n, v in snapshot(refs).items())
            assert all(torch.equal(v, fresh[0.4][n]) for n, v in snapshot(refs).items())
        assert all(torch.equal(v, fresh[0.5][n]) for n, v in snapshot(refs).items())
        name = refs[0].qualified_name
        kept = m.candidates(0.5, 0.6)[name][:1]
        with pytest.raises(ValueError, match="not pruned at the current level"):
            with m.override(restore={name: kept}):
                pass
        with pytest.raises(ValueError, match="both pruned and restored"):
            with m.override(prune={name: kept}, restore={name: kept}):
                pass
        with pytest.raises(ValueError, match="must be in"):
            with m.override(prune={name: torch.tensor([refs[0].numel])}):
                pass
        assert all(torch.equal(v, fresh[0.5][n]) for n, v in snapshot(refs).items())


def test_override_can_scale_a_set_and_restores_it_exactly(pipe):
    refs = select(pipe, ["text_encoder"])
    name = refs[0].qualified_name
    before = snapshot(refs)
    idx = torch.tensor([0, 5, 17])
    with mask(refs) as m:
        with m.override(prune={name: idx}, keep=0.25):  # a dose of the set: a quarter of each weight
            now = snapshot(refs)[name].view(-1)
            assert torch.equal(now[idx], before[name].view(-1)[idx] * 0.25)
            others = torch.ones(now.numel(), dtype=torch.bool)
            others[idx] = False
            assert torch.equal(now[others], before[name].view(-1)[others])
        assert all(torch.equal(v, before[n]) for n, v in snapshot(refs).items())
        with pytest.raises(ValueError, match="keep must be in"):
            with m.override(prune={name: idx}, keep=1.5):
                pass
    assert all(torch.equal(v, before[n]) for n, v in snapshot(refs).items())


def test_stats_layer_table_and_memory(pipe):
    refs = select(pipe, ["text_encoder", "unet"])
    with mask(refs) as m:
        # per tensor: floor(0.95 * numel) original fp32 values (4 bytes) + int16 positions (2 bytes)
        assert m.memory_bytes() == sum(int(0.95 * r.numel) * (4 + 2) for r in refs)
        m.set_sparsity(0.5)
        stats = m.stats(pipe)
        pruned = sum(int(0.5 * r.numel) for r in refs)
        assert stats["scope_numel"] == sum(r.numel for r in refs)
        assert stats["scope_sparsity"] == stats["scope_pruned"] == pruned / stats["scope_numel"]
        for c in ("text_encoder", "unet"):
            zeros = sum(int((p == 0).sum()) for p in getattr(pipe, c).parameters())
            assert stats["component_sparsity"][c] == zeros / component_numel(pipe, c)
        table = m.layer_table(0.25)
        assert list(table.columns) == ["qualified_name", "component", "region", "block", "role", "numel", "sparsity"]
        assert table["qualified_name"].tolist() == [r.qualified_name for r in refs]
        assert table.set_index("qualified_name").loc[refs[0].qualified_name, "sparsity"] == int(0.25 * 64) / 64
        assert set(table["role"]) >= {"self_attn.q_proj", "mlp.fc1", "attn2", "ff", "attn1"}
        assert m.sparsity == 0.5  # the table did not move the mask


def test_store_on_cpu_and_random_scores(pipe):
    before = weights_hash(pipe)
    refs = select(pipe, "unet")
    scores = RandomScorer(seed=3).scores(refs)
    with ProgressiveMask(refs, scores, store="cpu") as m:
        m.set_sparsity(0.5)
        assert m.stats(pipe)["scope_pruned"] == pytest.approx(sum(int(0.5 * r.numel) for r in refs) / m.numel)
    assert weights_hash(pipe) == before


@pytest.mark.parametrize("group", ["matrix", "global"])
def test_disk_store_holds_nothing_in_memory_and_equals_the_memory_store(pipe, group):
    before = weights_hash(pipe)
    refs = select(pipe, ["text_encoder", "unet"])
    with mask(refs, group) as m:
        m.set_sparsity(0.6)
        in_memory, held = snapshot(refs), m.stored_bytes()
        candidates = m.candidates(0.3, 0.6)
        m.set_sparsity(0.3)
        at_lower = snapshot(refs)
    assert weights_hash(pipe) == before
    with mask(refs, group, store="disk") as m:
        assert m.memory_bytes() == 0 and m.stored_bytes() == held > 0
        m.set_sparsity(0.6)
        assert all(torch.equal(v, in_memory[n]) for n, v in snapshot(refs).items())
        assert all(torch.equal(v, candidates[n]) for n, v in m.candidates(0.3, 0.6).items())
        with m.override(restore=candidates):  # originals come back from the file
            assert all(torch.equal(v, at_lower[n]) for n, v in snapshot(refs).items())
    assert weights_hash(pipe) == before


def test_auto_store_and_unknown_stores(pipe):
    refs = select(pipe, "unet")
    assert mask(refs, store="auto").store == "disk"  # weights on the CPU: a file
    assert mask(refs, store="memory").store is None
    assert mask(refs, store="cpu").store == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown store 'ssd'.*auto, memory, cpu, disk"):
        mask(refs, store="ssd")


@pytest.mark.parametrize("group", ["matrix", "row"])
def test_moves_in_small_chunks_equal_moves_in_one(pipe, group, monkeypatch):
    import sdprobe.prune.state as state
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    before, path, whole = weights_hash(pipe), [0.6, 0.15, 0.9, 0.3], []
    with mask(refs, group) as m:
        for s in path:
            m.set_sparsity(s)
            whole.append(snapshot(refs))
    monkeypatch.setattr(state, "CHUNK_ENTRIES", 5)  # a few entries per step: many chunks per move
    with mask(refs, group, store="disk") as m:
        for s, expected in zip(path, whole):
            m.set_sparsity(s)
            assert all(torch.equal(v, expected[n]) for n, v in snapshot(refs).items())
    assert weights_hash(pipe) == before


@pytest.mark.parametrize("store", STORES)
def test_restoring_overrides_in_row_groups_give_back_the_originals(pipe, store):
    refs = select(pipe, "text_encoder.mlp")
    original = snapshot(refs)
    with mask(refs, "row", store=store) as m:
        m.set_sparsity(0.3)
        at_lower = snapshot(refs)
        m.set_sparsity(0.6)
        with m.override(restore=m.candidates(0.3, 0.6)):  # entries of many rows come back from the store
            assert all(torch.equal(v, at_lower[n]) for n, v in snapshot(refs).items())
        with m.override(restore={r.qualified_name: m.pruned_indices(r.qualified_name, 0.6) for r in refs}):
            assert all(torch.equal(v, original[n]) for n, v in snapshot(refs).items())


CTRL_C_TWICE = r'''
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from fixtures_weights import weights_hash
from test_prune_masks import mask, toy_pipe
from sdprobe.architecture import select
from sdprobe.prune.state import TensorState

pipe = toy_pipe()
before = weights_hash(pipe)
unprune = TensorState.unprune
def unprune_then_ctrl_c(self, *args, **kwargs):  # the second Ctrl-C arrives in the middle of the restore
    os.kill(os.getpid(), signal.SIGINT)
    return unprune(self, *args, **kwargs)
TensorState.unprune = unprune_then_ctrl_c
try:
    with mask(select(pipe, ["text_encoder", "unet"])) as m:
        m.set_sparsity(0.6)
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C
        while True:  # not signal.pause(): the signal may land on a sort worker thread and never wake the main one
            time.sleep(0.01)
except KeyboardInterrupt:
    print("interrupted", "restored" if weights_hash(pipe) == before else "LEFT PRUNED")
'''


def test_a_second_ctrl_c_during_the_restore_waits_for_it(tmp_path):
    """Real SIGINTs in a subprocess: one while pruned, one in the middle of the restore. The restore finishes, then
    the interrupt is raised."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_TWICE)
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent)], capture_output=True, text=True,
                         timeout=120)
    assert "interrupted restored" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("shape", [(1, 100), (1, 200_003), (7, 40_000)])
def test_the_parallel_sort_orders_exactly_as_a_stable_float_argsort(shape):
    from sdprobe.prune.layout import ascending_order

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 50, shape, generator=g).float() / 7  # many ties, so stability matters
    scores[..., ::11] = -0.0  # signed zeros compare equal to 0.0
    scores[..., 5::13] = 0.0
    scores[..., 3::17] = -scores[..., 3::17]
    expected = torch.argsort(scores, dim=1, stable=True)
    assert torch.equal(ascending_order(scores), expected)
    assert torch.equal(ascending_order(scores, 17), expected[:, :17])


def test_the_parallel_gather_reads_the_same_values(monkeypatch):
    from sdprobe.prune import layout

    monkeypatch.setattr(layout, "GATHER_CHUNK", 1000)  # many chunks on a small tensor
    g = torch.Generator().manual_seed(1)
    matrix = torch.randn(1, 10_007, generator=g)
    order = torch.randperm(10_007, generator=g)[:9_500].reshape(1, -1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the parallel path needs two threads
    try:
        assert torch.equal(layout.gather_rows(matrix, order), matrix.gather(1, order))
    finally:
        torch.set_num_threads(threads)
    rows = torch.randn(3, 50, generator=g)  # several rows: torch's own gather
    idx = torch.argsort(rows, dim=1)[:, :40]
    assert torch.equal(layout.gather_rows(rows, idx), rows.gather(1, idx))


# --- batched moves (sdprobe.prune.flat) --------------------------------------------------------------------------------

def mixed_dtype_pipe() -> SimpleNamespace:
    """The toy pipeline with the UNet in float16: two dtype groups, two flat buffers."""
    pipe = toy_pipe()
    pipe.unet.half()
    return pipe


@pytest.mark.parametrize("store", [None, "disk", "cpu"])
@pytest.mark.parametrize("group", GROUPS)
def test_batched_moves_equal_moves_tensor_by_tensor(group, store, monkeypatch):
    import sdprobe.prune.flat as flat

    pipe = mixed_dtype_pipe()
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    before = weights_hash(pipe)
    path = [0.3, 0.5, 0.45, 0.05, 0.9, 0.0, 0.35, 0.35, 0.6]
    by_tensor = []
    with mask(refs, group) as m:
        for s in path:
            m.set_sparsity(s)
            by_tensor.append(snapshot(refs))
    for batch in (flat.BATCH_ENTRIES, 7):  # one batch per move; many batches, segments cut inside a tensor
        monkeypatch.setattr(flat, "BATCH_ENTRIES", batch)
        with mask(refs, group, store=store, moves="batched") as m:
            assert len(m._flat) == 2  # float32 and float16
            storages = {r.weight.untyped_storage().data_ptr() for r in refs}
            assert len(storages) == 2  # every weight of a dtype is a view of its buffer
            for s, expected in zip(path, by_tensor):
                m.set_sparsity(s)
                assert all(torch.equal(v, expected[n]) for n, v in snapshot(refs).items()), (batch, s)
        assert weights_hash(pipe) == before
        for r in refs:  # each weight owns its storage again (a saved pipeline holds no shared tensors)
            assert r.weight.untyped_storage().nbytes() == r.weight.numel() * r.weight.element_size()


def test_batched_moves_keep_the_parameters_and_restore_after_an_interruption(monkeypatch):
    import sdprobe.prune.flat as flat

    pipe = mixed_dtype_pipe()
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    params = [r.weight for r in refs]
    before = weights_hash(pipe)
    real, calls = flat.FlatWeights.unprune, {"n": 0}

    def flaky(self, segments):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, segments)

    with pytest.raises(KeyboardInterrupt):
        with mask(refs, moves="batched") as m:
            m.set_sparsity(0.8)
            monkeypatch.setattr(flat.FlatWeights, "unprune", flaky)
            m.set_sparsity(0.2)  # the first buffer restores, the second is interrupted
    monkeypatch.setattr(flat.FlatWeights, "unprune", real)
    assert weights_hash(pipe) == before
    assert [r.weight for r in select(pipe, ["text_encoder", "unet"], include_conv=True)] == params
    with mask(refs, moves="batched") as m:  # a mask can be entered again on the same weights
        m.set_sparsity(0.5)
    assert weights_hash(pipe) == before


def test_a_failed_rehoming_leaves_the_weights_in_place(monkeypatch):
    import sdprobe.prune.flat as flat

    pipe = mixed_dtype_pipe()
    refs = select(pipe, ["text_encoder", "unet"], include_conv=True)
    before = weights_hash(pipe)
    real, made = torch.empty, {"n": 0}

    def out_of_memory(*args, **kwargs):
        if isinstance(args[0], int) and args[0] > 100:  # the second flat buffer
            made["n"] += 1
            if made["n"] == 2:
                raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(flat.torch, "empty", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        with mask(refs, moves="batched"):
            pass
    monkeypatch.setattr(flat.torch, "empty", real)
    assert weights_hash(pipe) == before
    assert all(r.weight.numel() > 0 for r in refs)
    with mask(refs) as m:  # nothing was left registered under the failed mask
        m.set_sparsity(0.5)


def test_moves_choice(pipe):
    from sdprobe.prune.flat import resolve_moves

    assert resolve_moves("auto", torch.device("cpu"), "disk") == "tensor"  # the CPU path stays as it is
    assert resolve_moves("auto", torch.device("cuda"), torch.device("cpu")) == "batched"
    assert resolve_moves("auto", torch.device("cuda"), None) == "tensor"
    assert resolve_moves("batched", torch.device("cpu"), None) == "batched"
    with pytest.raises(ValueError, match="unknown moves 'fast'; valid: auto, tensor, batched"):
        mask(select(pipe, "text_encoder"), moves="fast")
