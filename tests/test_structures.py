"""The block interface and the layout: chain rules against numerical
derivatives, round trips between the free and natural scales, masks and
errors."""

import numpy as np
import pytest

from statsmodels_hetmixed.structures import (
    AdditiveVariance,
    JointCovariance,
    Layout,
    Level2Functions,
    LogLinearVariance,
    PowerVariance,
    StartContext,
    UnstructuredCovariance,
    VarianceComponent,
)
from statsmodels_hetmixed.structures.testing import check_block

RNG = np.random.default_rng(20261127)
N = 40


def _num_grad(f, x, h=1e-6):
    """Central differences."""
    g = np.zeros_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h * max(1.0, abs(x[j]))
        g[j] = (f(x + e) - f(x - e)) / (2 * e[j])
    return g


def _symmetric(q):
    a = RNG.normal(size=(q, q))
    return a + a.T


def _blocks():
    unstructured = UnstructuredCovariance(["a Var", "a x b Cov", "b Var"], [0, 1])
    component = VarianceComponent("vc Var", [2, 3, 4])
    w = np.column_stack([np.ones(N), RNG.normal(size=N)])
    loglinear = LogLinearVariance(w, ["Intercept", "x"])
    additive = AdditiveVariance(np.column_stack([np.ones(N), RNG.integers(0, 2, N)]),
                                ["Intercept", "male"])
    power = PowerVariance(RNG.uniform(0.5, 3.0, N) * RNG.choice([-1, 1], N), "v")
    return unstructured, component, loglinear, additive, power


@pytest.mark.parametrize("which", range(5))
def test_blocks_pass_the_numerical_checks(which):
    block = _blocks()[which]
    free = RNG.normal(size=block.k)
    if isinstance(block, UnstructuredCovariance):
        free[[0, 2]] = np.abs(free[[0, 2]]) + 0.2  # a positive definite G
    if isinstance(block, (AdditiveVariance, PowerVariance)):
        free = np.abs(free) + 0.2
    check_block(block, free)


class _WrongChainRule(AdditiveVariance):
    def free_gradient(self, free, grad_log_variance):
        return self.natural_gradient(self.to_natural(free), grad_log_variance)


class _WrongDirections(VarianceComponent):
    def directions(self):
        return 2.0 * super().directions()


class _WrongFactorChainRule(Level2Functions):
    def factor_gradient(self, free, grad):
        # a sign error in the mean-scale block of d llf / dL
        grad = dict(grad, L_uw=-grad["L_uw"])
        return super().factor_gradient(free, grad)


@pytest.mark.parametrize("broken, message", [
    (lambda: _WrongChainRule(np.column_stack([np.ones(N), RNG.integers(0, 2, N)]),
                             ["Intercept", "male"]), "free_gradient"),
    # natural_gradient is built from the directions: caught there first
    (lambda: _WrongDirections("vc Var", [0, 1]), "natural_gradient"),
    (lambda: _WrongFactorChainRule([f"f{j}" for j in range(6)], ["Intercept"], 1, 2,
                                   np.ones((3, 1))), "factor_gradient"),
])
def test_check_block_catches_wrong_derivatives(broken, message):
    block = broken()
    with pytest.raises(AssertionError, match=message):
        check_block(block, np.full(block.k, 0.7))


def _layout(variance=2):
    unstructured, component, loglinear, additive, _ = _blocks()
    var_block = loglinear if variance == 2 else additive
    # given out of role order: the layout puts covariance blocks first
    return Layout(["Intercept", "x"], [var_block, unstructured, component], q=5)


def test_layout_order_names_and_slices():
    lay = _layout()
    assert lay.names == ["Intercept", "x", "a Var", "a x b Cov", "b Var",
                         "vc Var", "var:Intercept", "var:x"]
    assert (lay.k_fe, lay.k_cov, lay.k_var, lay.k_params) == (2, 4, 2, 8)
    assert lay.names[lay.cov] == ["a Var", "a x b Cov", "b Var", "vc Var"]
    assert lay.names[lay.var] == ["var:Intercept", "var:x"]
    np.testing.assert_array_equal(lay.variances,
                                  [True, False, True, True, False, False])
    np.testing.assert_array_equal(lay.bounded,
                                  [False, False, False, True, False, False])
    assert [list(s) for s in lay.vc_slots] == [[2, 3, 4]]


@pytest.mark.parametrize("variance", [2, 3])
def test_layout_round_trip_and_chain_rule(variance):
    lay = _layout(variance)
    free = RNG.normal(size=lay.k_structure)
    free[[0, 2]] = np.abs(free[[0, 2]]) + 0.1  # Cholesky diagonal > 0
    free[4:] = np.abs(free[4:]) + 0.3
    natural = lay.to_natural(free)
    np.testing.assert_allclose(lay.to_natural(lay.from_natural(natural)), natural,
                               rtol=1e-12)
    # back to the same free vector, but for the sign of the component's SD
    expected = free.copy()
    expected[3] = abs(free[3])
    np.testing.assert_allclose(lay.from_natural(natural), expected, rtol=1e-12)
    L = lay.factor_from_free(free)
    np.testing.assert_allclose(L @ L.T, lay.factor(natural) @ lay.factor(natural).T,
                               rtol=1e-12, atol=1e-14)
    gamma, g = _symmetric(5), RNG.normal(size=N)

    def value(f):
        Lf = lay.factor_from_free(f)
        return np.sum(gamma * (Lf @ Lf.T)) + g @ np.log(lay.resid_var(lay.to_natural(f)))

    np.testing.assert_allclose(lay.free_gradient(free, gamma, g),
                               _num_grad(value, free), rtol=1e-6, atol=1e-8)

    def value_natural(x):
        Lx = lay.factor(x)
        return np.sum(gamma * (Lx @ Lx.T)) + g @ np.log(lay.resid_var(x))

    np.testing.assert_allclose(lay.natural_gradient(natural, gamma, g),
                               _num_grad(value_natural, natural), rtol=1e-6, atol=1e-8)
    cov_dirs, var_dirs = lay.info_directions(natural)
    assert cov_dirs.shape == (4, 5, 5) and var_dirs.shape == (N, 2)
    np.testing.assert_allclose(np.einsum("kab,ab->k", cov_dirs, gamma),
                               lay.natural_gradient(natural, gamma, g)[:4])


def test_split_says_what_was_expected():
    lay = _layout()
    fe, natural = lay.split(np.arange(8.0))
    np.testing.assert_array_equal(fe, [0, 1])
    np.testing.assert_array_equal(natural, np.arange(2.0, 8.0))
    assert lay.split(np.arange(6.0))[0] is None
    with pytest.raises(ValueError, match=r"length 5; this model has 8 parameters "
                       r"\['Intercept', 'x', 'a Var'.*or 6 without the 2 fixed"):
        lay.split(np.arange(5.0))
    with pytest.raises(ValueError, match="shape"):
        lay.split(np.zeros((2, 4)))


def test_boundary_and_admissible():
    lay = _layout(3)
    natural = np.array([1.0, 0.0, 1e-12, 0.5, 2.0, 0.0])
    np.testing.assert_array_equal(lay.at_boundary(natural, scale=1.0),
                                  [False, False, True, False, False, True])
    # the same variances are inside the space relative to a tiny scale
    assert not lay.at_boundary(natural, scale=1e-6)[2]
    assert lay.admissible(natural)
    natural[1] = 2.0  # |corr| > 1: not a covariance matrix
    assert not lay.admissible(natural)
    with pytest.raises(ValueError, match="non-negative"):
        lay.from_natural(np.array([1.0, 0.0, 1.0, -0.1, 1.0, 1.0]))


def test_start_values():
    lay = _layout()
    context = StartContext(resid=RNG.normal(size=N), total=2.0, share_re=0.25,
                           z_mean_square=np.array([1.0, 4.0, 2.0, 2.0, 2.0]))
    start = lay.start(context)
    np.testing.assert_allclose(start[:4], [0.5, 0.0, 0.125, 0.25])
    assert start.size == lay.k_structure


def test_power_variance_refuses_zeros_and_missing_values():
    with pytest.raises(ValueError, match="has zeros"):
        PowerVariance([1.0, 0.0, 2.0], "dose")
    with pytest.raises(ValueError, match="missing or infinite"):
        PowerVariance([1.0, np.nan], "dose")


def test_layout_natural_jacobian():
    lay = _layout(3)
    free = np.array([0.9, -0.3, 0.7, 0.5, 1.1, 0.4])
    jac = lay.natural_jacobian(free)
    numeric = np.column_stack([_num_grad(lambda f, i=i: lay.to_natural(f)[i], free)
                               for i in range(free.size)]).T
    np.testing.assert_allclose(jac, numeric, rtol=1e-7, atol=1e-9)


def test_unstructured_hold_patterns():
    names3 = ["a Var", "a x b Cov", "b Var", "a x c Cov", "b x c Cov", "c Var"]
    block = UnstructuredCovariance(names3, [0, 1, 2])
    start = block.from_natural(block.vech(np.diag([1.0, 2.0, 3.0])))
    # independent blocks {a, b} and {c}: covariances with c held at zero
    mask = np.array([True, True, True, False, False, True])
    free = block.hold(mask, start)
    L = block.factor_from_free(free)
    assert L[2, 0] == 0 and L[2, 1] == 0
    # a random effect held out: its variance and covariances at zero
    held = block.from_natural(block.vech(np.diag([1.0, 2.0, 0.0])))
    free = block.hold(np.array([True, True, True, False, False, False]), held)
    assert np.all(block.factor_from_free(free)[2] == 0)
    with pytest.raises(NotImplementedError, match="together with all its"):
        block.hold(np.array([True, True, True, True, True, False]), start)
    with pytest.raises(NotImplementedError, match="independent blocks"):
        # b x c held at zero while a x b and a x c are free: L[2, 1] = 0
        # leaves cov(b, c) = L[2, 0] L[1, 0] free to move (fill-in)
        block.hold(np.array([True, True, True, True, False, True]), start)
    with pytest.raises(NotImplementedError, match="independent blocks"):
        correlated = block.from_natural(block.vech(
            np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.5, 0.0, 3.0]])))
        block.hold(mask, correlated)  # a x c is held, but not at zero


def _joint(q_w, q_u, independent=False):
    d = q_w + q_u
    names = [f"c{i}{j}" for i in range(d) for j in range(i + 1)]
    return JointCovariance(names, q_w, q_u, independent=independent)


@pytest.mark.parametrize("q_w, q_u", [(1, 1), (1, 2), (2, 1)])
def test_joint_covariance_passes_the_numerical_checks(q_w, q_u):
    block = _joint(q_w, q_u)
    L = np.tril(RNG.normal(size=(block.dim, block.dim))) + 2 * np.eye(block.dim)
    check_block(block, block.free_from_factor(L))


def test_joint_covariance_orders_and_held_entries():
    """Free: the Cholesky factor with the scale effects first; natural: the
    matrix with the mean effects first; independent holds the factor's
    mean-scale entries, and from_natural refuses what it cannot hold."""
    block = _joint(1, 2)
    L = np.tril(RNG.normal(size=(3, 3))) + 2 * np.eye(3)
    sigma = L @ L.T                            # scale effect first
    mean_first = sigma[np.ix_([1, 2, 0], [1, 2, 0])]
    natural = block.to_natural(block.free_from_factor(L))
    np.testing.assert_allclose(block.matrix(natural), mean_first, rtol=1e-14)
    assert block.estimated.all()
    held = _joint(1, 2, independent=True)
    # entries (1, 0) and (2, 0) of L: the mean effects' column of omega
    np.testing.assert_array_equal(held.estimated,
                                  [True, False, True, False, True, True])
    # natural order, mean effects first: the scale effect's row (2, 0), (2, 1)
    np.testing.assert_array_equal(held.natural_estimated,
                                  [True, True, True, False, False, True])
    assert block.natural_estimated.all()
    with pytest.raises(ValueError, match="holds the covariances"):
        held.from_natural(natural)
    inside = mean_first.copy()
    inside[:2, 2] = inside[2, :2] = 0.0
    L_held = held.factor_from_free(held.from_natural(held.vech(inside)))
    assert np.all(L_held[1:, 0] == 0)
    outside = np.diag([1.0, 1.0, -0.5])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        block.from_natural(block.vech(outside))
    with pytest.raises(NotImplementedError):
        block.hold(np.array([True, False, True, True, True, True]),
                   block.free_from_factor(L))


def test_layout_theta_of_a_location_scale_model():
    """theta: fixed effects, the variance function, then the joint factor
    (roles in the given order); unpack, the chain rule of the engine's
    gradient, the estimated mask and the typical sizes."""
    w = np.column_stack([np.ones(N), RNG.normal(size=N)])
    variance = LogLinearVariance(w, ["Intercept", "x"])
    joint = _joint(1, 1, independent=True)
    layout = Layout(["b0", "b1", "b2"], [joint, variance], q=2,
                    roles=("variance", "re_cov"))
    assert layout.blocks == [variance, joint]
    assert (layout.p, layout.k_var, layout.size) == (3, 2, 8)
    assert layout.slice_of(joint) == slice(5, 8) and layout.cov == slice(5, 8)
    np.testing.assert_array_equal(layout.estimated, [1, 1, 1, 1, 1, 1, 0, 1])
    L = np.array([[0.5, 0.0], [0.3, 0.8]])
    theta = layout.pack([1.0, 2.0, 3.0], [0.1, 0.2], joint.free_from_factor(L))
    beta, a, factor = layout.unpack(theta)
    np.testing.assert_array_equal(beta, [1, 2, 3])
    np.testing.assert_array_equal(a, [0.1, 0.2])
    np.testing.assert_array_equal(factor, L)
    grad = {"beta": np.array([1.0, 2.0, 3.0]), "a": np.array([4.0, 5.0]),
            "L_ww": np.array([[6.0]]), "L_uw": np.array([[7.0]]),
            "L_uu": np.array([[8.0]])}
    np.testing.assert_array_equal(layout.gradient(grad, theta), np.arange(1.0, 9.0))

    class Data:
        endog = 3.0 * RNG.normal(size=N)
        exog_re = np.full((N, 1), 2.0)
        exog_var_re = np.full((N, 1), 0.5)

    units = layout.unit_scale(Data)
    sd_u = np.std(Data.endog) / 2.0
    np.testing.assert_allclose(units, [1, 1, 1, 1, 1, 2.0, sd_u, sd_u], rtol=1e-14)
    with pytest.raises(ValueError, match="1 free vectors for 2 blocks"):
        layout.pack([1.0, 2.0, 3.0], [0.1, 0.2])


def _level2(q_w, q_u, S, **kw):
    d = q_w + q_u
    functions = [f"f{j}" for j in range(d + d * (d - 1) // 2)]
    return Level2Functions(functions, [f"s{j}" for j in range(S.shape[1])],
                           q_w, q_u, S, **kw)


@pytest.mark.parametrize("q_w, q_u", [(1, 1), (1, 2), (2, 1)])
def test_level2_functions_pass_the_numerical_checks(q_w, q_u):
    """The generic checks and the chain rule from the per-group factors
    (the backward Cholesky) against central differences."""
    S = np.column_stack([np.ones(6), RNG.normal(size=6)])
    block = _level2(q_w, q_u, S)
    free = 0.3 * RNG.normal(size=block.k)  # small correlations: every Sigma_i PD
    check_block(block, free)


def test_level2_functions_sigma_held_terms_and_names():
    S = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
    block = Level2Functions(["logvar(w)", "logvar(u)", "atanh corr(u, w)"],
                            ["Intercept", "s"], 1, 1, S,
                            terms=[[True, True], [True, False], [True, True]],
                            independent=True)
    assert block.names == ["logvar(w):Intercept", "logvar(w):s", "logvar(u):Intercept",
                           "logvar(u):s", "atanh corr(u, w):Intercept",
                           "atanh corr(u, w):s"]
    # terms hold logvar(u):s; independent holds the mean-scale correlation
    np.testing.assert_array_equal(block.estimated, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(block.correlations, [0, 0, 0, 0, 1, 1])
    assert block.component(0, 1) == block.component(1, 0) == 2
    assert block.coefficient(1, 1, column=1) == 3
    C, E = np.array([[0.2, 0.1], [-0.4, 0.3]]), np.array([[0.5, -0.2]])
    free = block.pack(C, E)
    np.testing.assert_array_equal(np.concatenate(block.split(free)), np.r_[C, E])
    sigma = block.sigma(free)[0]
    s = S[2]
    sd = np.exp(0.5 * C @ s)
    rho = np.tanh(E[0] @ s)
    expected = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]],
                         [rho * sd[0] * sd[1], sd[1] ** 2]])
    np.testing.assert_allclose(sigma[2], expected, rtol=1e-14)
    L = block.factor_from_free(free)
    np.testing.assert_allclose(L @ np.swapaxes(L, 1, 2), sigma, rtol=1e-13)
    rms = np.sqrt(np.mean(S ** 2, axis=0))
    np.testing.assert_allclose(block.unit_scale(), np.tile(1 / rms, 3), rtol=1e-14)
    with pytest.raises(ValueError, match="3 functions and 1 columns"):
        Level2Functions(["a", "b", "c"], ["Intercept"], 1, 1, S)


def test_level2_functions_refuse_a_covariance_that_is_not_positive_definite():
    """Three effects whose correlations (0.99, 0.99, -0.99) give no
    positive definite matrix: the factor raises LinAlgError (theta
    outside the parameter space), a matrix inside does not."""
    block = _level2(1, 2, np.ones((3, 1)))
    C = np.zeros((3, 1))
    inside = block.pack(C, np.array([[0.3], [0.2], [-0.1]]))
    outside = block.pack(C, np.arctanh([[0.99], [0.99], [-0.99]]))
    assert block.factor_from_free(inside).shape == (3, 3, 3)
    with pytest.raises(np.linalg.LinAlgError):
        block.factor_from_free(outside)


@pytest.mark.filterwarnings("ignore:The variance design")
@pytest.mark.parametrize("origin", [0.0, 1e4])
def test_log_linear_start_is_the_least_squares_fit(origin):
    """The log-linear block's starting values (the normal equations of
    its centred columns, one pass) are the least-squares regression of
    the log squared residuals on W (an SVD of W), also for a covariate far
    from its origin; and without an intercept column (least squares)."""
    x = RNG.normal(size=N) + origin
    resid = RNG.normal(size=N) * np.exp(0.3 * (x - origin))
    logsq = np.log(resid**2 + 1e-8 * np.mean(resid**2) + 1e-300)
    for w in (np.column_stack([np.ones(N), x, RNG.normal(size=N)]),
              np.column_stack([x, RNG.normal(size=N)])):
        block = LogLinearVariance(w, [f"c{j}" for j in range(w.shape[1])])
        coef = np.linalg.lstsq(w, logsq, rcond=None)[0]
        if block.const_direction is not None:
            coef = coef + (np.log(0.5) + 1.2703628454614782) * block.const_direction
        np.testing.assert_allclose(block.start_params(resid, 0.5), coef,
                                   rtol=1e-9, atol=1e-12)
