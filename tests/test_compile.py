"""The forward passes compile as one graph: no host synchronisation (``.item()``, ``.all()``, ``.tolist()``) and no
Python branch on tensor values anywhere in the step (issue 9 item 1). CPU, ``backend="eager"``: dynamo still traces
the whole forward, which is what a graph break would interrupt, without spending minutes in a code generator."""

import pytest
import torch

import brainmass_hf as bm
from conftest import pretraining_batch, tiny_config


def _padded_batch():
    time_series = torch.randn(4, 60, 116)
    time_mask = torch.ones(4, 60, dtype=torch.bool)
    time_mask[0, 45:] = False
    time_series[0, 45:] = float("nan")  # padding may hold anything; the model must ignore it
    return time_series, time_mask


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("inputs", ["time_series", "connectivity"])
def test_encoder_forward_compiles_as_one_graph(inputs):
    model = bm.BrainMassModel(tiny_config()).train()
    time_series, time_mask = _padded_batch()
    batch = (
        {"time_series": time_series, "time_mask": time_mask}
        if inputs == "time_series"
        else {"connectivity": bm.functional_connectivity(time_series, time_mask)}
    )
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(**batch)
    assert out.pooler_output.shape == (4, 116 * 8) and torch.isfinite(out.pooler_output).all()


@pytest.mark.slow  # ~9 s on the shared 2-core machine
def test_pretraining_forward_compiles_as_one_graph_and_equals_eager():
    # training mode: the pFC views and masked ROIs come in the batch (the model draws nothing); BatchNorm's batch
    # statistics are compared too.
    # Dropout is off here because eager CPU dropout draws its own fast mask and a compiled step torch's
    # (modeling_brainmass.inverted_dropout); the encoder test above compiles with dropout on.
    model = bm.BrainMassForPreTraining(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    time_series, time_mask = _padded_batch()
    batch = pretraining_batch(time_series, model.config, time_mask)
    expected = model(**batch)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    got = compiled(**batch)
    for name in ("loss", "lra_loss", "mrm_loss", "mrc_loss"):
        assert torch.allclose(got[name], expected[name], atol=1e-5), name
    model.zero_grad()
    got.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_classifier_forward_with_labels_compiles_as_one_graph():
    model = bm.BrainMassForConnectomeClassification(tiny_config(num_labels=2)).train()
    time_series, time_mask = _padded_batch()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(time_series=time_series, time_mask=time_mask, labels=torch.tensor([0, 1, 1, 0]))
    assert torch.isfinite(out.loss)
