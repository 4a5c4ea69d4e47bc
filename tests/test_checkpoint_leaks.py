"""Checkpoint saves and TensorStore's leaking calls (issue 11: memory over a long run).

TensorStore never frees what `KvStore.Spec.to_json()` returns, and Orbax called it for every
array of every save, beside `experimental_collect_matching_metrics` twice per save;
`checkpoint.TensorStoreWithoutLeaks` resolves each directory's spec once and reads no metrics.
"""

import gc
import tracemalloc

import jax
import numpy as np
import optax
import pytest
import tensorstore
from orbax.checkpoint._src.serialization import tensorstore_utils as orbax_tensorstore

from jaxdistil import checkpoint
from jaxdistil.checkpoint import checkpoint_manager, restore_train_state, save_train_state
from jaxdistil.data.pipeline import make_train_iterator
from jaxdistil.optim import TrainState

BLOCKS = [np.full(8, i + 10, np.int32) for i in range(16)]
SAVES = 6


def _state(step):
    params = {"w": np.arange(3.0, dtype=np.float32) + step, "b": {"x": np.ones((4, 2), np.float32) * step}}
    return TrainState(step=jax.numpy.asarray(step), params=params, opt_state=optax.adam(0.1).init(params),
                      rng=jax.random.PRNGKey(step))


def _iterator():
    return make_train_iterator(BLOCKS, global_batch_size=2, seed=0, pad_id=1, process_index=0, process_count=1)


class CountingTensorStore:
    """`tensorstore`, counting the calls that leak."""

    def __init__(self):
        self.to_json = self.metrics = 0
        counter = self

        class Spec:
            def __init__(self, spec):
                self.real = tensorstore.KvStore.Spec(spec)

            def to_json(self):
                counter.to_json += 1
                return self.real.to_json()

        class KvStore:
            @staticmethod
            def open(spec, *args, **kwargs):
                return tensorstore.KvStore.open(spec.real if isinstance(spec, Spec) else spec, *args, **kwargs)

        KvStore.Spec = Spec
        self.KvStore = KvStore

    def experimental_collect_matching_metrics(self, *args, **kwargs):
        self.metrics += 1
        return tensorstore.experimental_collect_matching_metrics(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(tensorstore, name)


def _saves_counted(directory, monkeypatch, workaround):
    """(manager, TensorStore's calls counted over SAVES saves of a 9-array state)."""
    counting = CountingTensorStore()
    monkeypatch.setattr(orbax_tensorstore, "ts", checkpoint.TensorStoreWithoutLeaks() if workaround else counting)
    monkeypatch.setattr(checkpoint, "tensorstore", counting)  # what the workaround itself calls
    monkeypatch.setattr(checkpoint, "avoid_tensorstore_leaks", lambda: None)  # Orbax's `ts` is set above
    manager, iterator = checkpoint_manager(directory, keep=3), _iterator()
    for step in range(1, 1 + SAVES):
        next(iterator)
        save_train_state(manager, _state(step), iterator)
    return manager, counting


def test_saves_resolve_each_directory_once_read_no_metrics_and_restore_what_was_saved(tmp_path, monkeypatch):
    checkpoint._resolved_kvstore_spec.cache_clear()
    manager, ours = _saves_counted(tmp_path / "ours", monkeypatch, workaround=True)
    last = _state(SAVES)
    restored = restore_train_state(manager, jax.eval_shape(lambda: last), _iterator())
    manager.close()
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(last), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, theirs = _saves_counted(tmp_path / "theirs", monkeypatch, workaround=False)
    arrays = len(jax.tree.leaves(last))
    assert theirs.to_json >= arrays * SAVES and theirs.metrics >= 2 * SAVES, vars(theirs)  # Orbax as is
    assert ours.metrics == 0
    # once per directory a save writes (its process's, and the merge's two), not once per array
    assert ours.to_json <= 3 * SAVES < theirs.to_json, (ours.to_json, theirs.to_json)


CALLS = 200


def _blocks_kept(call):
    """Python memory blocks still held after CALLS calls of `call` (one call first, to fill caches)."""
    call()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(CALLS):
            call()
        gc.collect()
        return sum(d.count_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()


def test_tensorstore_keeps_what_to_json_returns():
    """The leak worked around. When this fails, TensorStore frees it and the workaround can go."""
    spec = {"driver": "file", "path": "/tmp/some/checkpoint/"}
    kept = _blocks_kept(lambda: tensorstore.KvStore.Spec(spec).to_json())
    assert kept >= CALLS, kept


def test_without_the_leaking_calls_the_same_calls_keep_nothing():
    ours, spec = checkpoint.TensorStoreWithoutLeaks(), {"driver": "file", "path": "/tmp/some/other/checkpoint/"}

    def call():
        ours.KvStore.Spec(spec).to_json()
        ours.experimental_collect_matching_metrics(ours.KVSTORE_METRICS)

    kept = _blocks_kept(call)
    assert kept < CALLS / 10, kept


@pytest.mark.parametrize("spec", [{"driver": "file", "path": "/tmp/some/checkpoint/"},
                                  {"driver": "memory", "path": "a/"}])
def test_resolved_kvstore_specs_are_tensorstores_own(spec):
    ours = checkpoint.TensorStoreWithoutLeaks().KvStore.Spec(spec)
    assert ours.to_json() == tensorstore.KvStore.Spec(spec).to_json()
    assert ours.to_json() is not ours.to_json()  # a fresh copy each time: Orbax may change what it gets
