"""Generator, Discriminator, the EMA of G's weights, the R1 penalty and the lr schedule."""
import pytest
import torch

import basic_gan


def test_generator_makes_images_in_tanh_range():
    G = basic_gan.Generator(64, (128, 256, 512, 1024))
    images = G(torch.randn(32, 64))
    assert images.shape == (32, 784) and images.min() >= -1 and images.max() <= 1
    widths = [m.out_features for m in G.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 256, 512, 1024, 784]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in G.modules()) == 4


def test_discriminator_gives_one_logit_per_image():
    # so the weights, and whether a logit leaves [0, 1], are the same every time
    torch.manual_seed(0)
    D = basic_gan.Discriminator((512, 256, 128))
    logits, classes = D(torch.randn(8, 784) * 10)
    assert logits.shape == (8, 1) and classes is None  # no class guesses where there are no classes
    assert isinstance(D.head, torch.nn.Linear)  # a logit: BCEWithLogitsLoss adds the sigmoid
    assert (logits < 0).any() or (logits > 1).any()


def test_under_conditional_the_batch_spread_is_taken_within_each_class():
    """Across classes the spread is wide whatever G does; within one, fakes too alike show."""
    torch.manual_seed(0)
    spread = basic_gan.BatchSpread()
    labels = torch.tensor([0, 0, 1, 1, 1, 3])  # class 2 absent, class 3 alone: no spread of its own
    alike, varied = torch.randn(4, 12)[labels], torch.randn(6, 12)  # alike: copies within a class
    for x in (alike, varied):
        out = spread(x, labels, 4)
        assert torch.equal(out[:, :-1], x) and (out[:, -1] == out[0, -1]).all()  # one, for all
    assert spread(alike, labels, 4)[0, -1] < 1e-3 < 0.5 < spread(alike)[0, -1]
    by_hand = torch.stack([varied[labels == c].std(0, unbiased=False).mean() for c in (0, 1)])
    assert spread(varied, labels, 4)[0, -1].item() == pytest.approx(by_hand.mean().item(), abs=1e-6)
    D = basic_gan.Discriminator((16, 8), pixels=12, classes=4)  # D takes it within each class
    seen = []
    D.head.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0][0, -1].item()))
    (logit, classes), _ = D(alike, labels), D(varied, labels)
    assert logit.shape == (6, 1) and classes.shape == (6, 4) and seen[0] < 1e-3 < seen[1]


def test_ema_warms_up_then_lags(gan):
    gan.ema_decay, gan.n_critic = 0.999, 1  # G learns on every step
    G = gan.Generator(4, (8,))
    ema = gan.make_ema(G)

    def weight(m):
        return next(m.parameters()).detach().clone()

    for step in range(3):
        with torch.no_grad():
            for p in G.parameters():
                p.add_(1.0)
        gan.ema_update(ema, G, step)
    # update 1 copies G; updates 2 and 3 keep (1+n)/(21+n) = 2/22, then 3/23, of the gap: at most
    # the last twentieth of the steps. A plain 0.999 average would still be ~2 behind.
    gap = (weight(G) - weight(ema)).abs().mean().item()
    assert abs(gap - (1 + 2 / 22) * 3 / 23) < 1e-5
    assert all(not p.requires_grad for p in ema.parameters())


def test_ema_span_grows_as_the_lr_falls(gan):
    # ~100 steps at the lr's peak (a run stopped early draws from a recent G), ~1,000 at its end.
    gan.ema_decay, gan.n_critic = 0.99, 1
    G = gan.Generator(4, (8,))
    ema = gan.make_ema(G)

    def weight(m):
        return next(m.parameters()).detach().clone()

    # And never more than a twentieth of the steps so far: a short run's end is not averaged away.
    for step, lr_share, kept in ((10**6, 1.0, 0.99), (10**6, 0.5, 0.995), (10**6, 0.1, 0.999),
                                 (10**6, 0.0, 0.999), (4000, 0.1, 4001 / 4021), (4000, 1.0, 0.99)):
        ema.load_state_dict(G.state_dict())
        with torch.no_grad():
            for p in G.parameters():
                p.add_(1.0)
        gan.ema_update(ema, G, step, lr_share)
        assert abs((weight(G) - weight(ema)).abs().mean().item() - kept) < 1e-4


def test_the_average_moves_once_for_the_steps_that_leave_g_as_it_is(gan):
    # G learns on every n_critic-th step: there the average makes the moves of that step and of
    # the steps until G's next at once, and after them it is where a move on every step puts it.
    # Late in a run, so the span set by the lr is what binds; the lr falls at G's step 3020.
    torch.manual_seed(0)
    G = gan.Generator(4, (8,))
    folded, every_step = gan.make_ema(G), gan.make_ema(G)
    for step in range(3000, 3040):
        if (step + 1) % 3 == 0:  # G learns
            with torch.no_grad():
                for p in G.parameters():
                    p.add_(torch.randn_like(p))
        lr_share = 0.5 if step >= 3020 else 1.0
        before, gan.n_critic = [p.clone() for p in folded.parameters()], 3
        gan.ema_update(folded, G, step, lr_share)
        moved = not all(map(torch.equal, before, folded.parameters()))
        assert moved == ((step + 1) % 3 == 0)  # on G's steps only
        gan.n_critic = 1
        gan.ema_update(every_step, G, step, lr_share)
        if step % 3 == 1:  # the steps G's last move stood for are all made
            assert all(torch.allclose(a, b, atol=1e-6) for a, b in
                       zip(folded.parameters(), every_step.parameters()))
    assert not torch.allclose(next(folded.parameters()), next(G.parameters()), atol=1e-2)


def test_the_average_draws_with_batchnorm_statistics_of_its_own_output(gan):
    torch.manual_seed(0)
    ema = gan.make_ema(gan.Generator(8, (16, 32)))
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(torch.randn_like(p))  # weights out of step with the statistics it holds
    weights = [p.clone() for p in ema.parameters()]
    assert gan.settled(ema, 0) is ema and gan.settled(None, 0) is None
    with torch.no_grad():
        first = ema.net[0](torch.randn(20000, 8))  # what the first BatchNorm sees from fresh noise
    norm = ema.net[1]
    assert ((norm.running_mean - first.mean(0)).abs() < 0.15 * first.std(0)).all()
    assert ((norm.running_var / first.var(0)) - 1).abs().max() < 0.15
    assert all(torch.equal(a, b) for a, b in zip(weights, ema.parameters()))  # only the statistics
    assert norm.momentum == 0.1 and ema.training  # as it was: a copy of G in training mode
    statistics = [b.clone() for b in ema.buffers()]
    # its own fixed noise: the same statistics again, and no draw from torch's RNG
    gan.settled(ema, 0)
    assert all(torch.equal(a, b) for a, b in zip(statistics, ema.buffers()))


def test_r1_penalty_is_the_squared_input_gradient(gan):
    gan.r1_gamma = 10.0
    D = torch.nn.Linear(784, 1)
    real = torch.randn(5, 784, requires_grad=True)
    expected = 10.0 / 2 * D.weight.square().sum()
    assert torch.allclose(gan.r1_penalty(real, D(real)), expected)


def test_precision_is_fp32_where_bf16_is_not_native(gan, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    gan.device = "cpu"
    assert gan.pick_device() == (torch.device("cpu"), "fp32")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert gan.pick_device() == (torch.device("cpu"), "bf16")
    gan.precision = "fp32"
    assert gan.pick_device() == (torch.device("cpu"), "fp32")


def test_lr_is_constant_then_falls_linearly_towards_zero(gan):
    gan.lr, gan.lr_decay = 1.0, 0.25
    lrs = [gan.lr_at(step, 100) for step in range(100)]
    assert lrs[:76] == [1.0] * 76  # the first 75% of the steps
    assert all(a > b for a, b in zip(lrs[75:], lrs[76:])) and lrs[99] == pytest.approx(1 / 25)
    gan.lr_decay = 0
    assert gan.lr_at(99, 100) == 1.0


def test_between_reports_nothing_waits_for_a_number_from_the_device(gan, tiny_data, monkeypatch):
    """On a GPU every .item(), .tolist() or tensor used as a Python number stalls the pipeline; the
    loop's step, the EMA and the data make none, so the losses are read only at a report."""
    gan.data_dir, gan.batch_size, gan.z_dim = str(tiny_data), 16, 8
    gan.g_widths, gan.d_widths = (32,), (32,)
    images, labels, _ = gan.load_images()
    G, D, G_ema, opt_g, opt_d = gan.make_models(torch.device("cpu"))
    # its seed: once an epoch, on the CPU
    batches = iter(gan.make_dataloader(images, labels, epoch=0))
    reads = []

    def counted(name, real):
        def read(self, *args):
            reads.append(name)
            return real(self, *args)
        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    for step, (batch, _) in enumerate(batches):
        losses = gan.train_step(G, D, opt_g, opt_d, gan.to_model_range(batch), use_r1=step % 4 == 0)
        gan.ema_update(G_ema, G, step)
    assert step == 15 and reads == [] and isinstance(losses["G"], torch.Tensor)
    # what a report does, and it is counted
    assert float(losses["G"]) > 0 and reads == ["__float__"]
