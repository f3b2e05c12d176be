"""pwtt held to a plain-NumPy transcription of the PWTT reference code as published today.

The reference is oballinger/PWTT pwtt/__init__.py at e116b6b16768127fce2f5fd0d05a4dd9693f30cf
(Earth Engine code; line numbers below are of that file). The transcription works on whole
arrays the way Earth Engine does (a masked pixel is NaN and is skipped by collection
reducers, `ee.Reducer.stdDev` is the population standard deviation, counts are of VV) and
uses none of pwtt's kernels; it is slow and obviously the reference's formulas, not fast.

Held at 1e-3: the per-pixel statistic (the reference's `max_change`), `p_value`, `n_pre`,
`n_post`, and the score (the statistic smoothed by pwtt's `smooth_statistic`, which this
work leaves as it was, then masked to the data as :821-822). Two deliberate differences, both
documented in the README: the normal CDF uses Abramowitz & Stegun's b4 = -1.821255978 where
the reference (:33) has the typo -1.882575977; the reference's z-test reports n_post = 1 on
every pixel (:207), pwtt 1 where the pixel has a post image (compared where z is valid).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from ruinmap.cluster.methods import PwttParams, ScoreContext
from ruinmap.cluster.methods.pwtt import pwtt_layers, pwtt_statistic, smooth_statistic
from ruinmap.errors import SpecError
from ruinmap.kernels.lee import lee_filter_reference

SHAPE = (24, 20)
#: three orbits with pre and post dates, orbit 4 with pre dates only (not in the reference's
#: orbit list, :402-408), orbit 5 with one post date only (listed, never valid)
PRE_ORBITS = (1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 4, 4, 4)
POST_ORBITS = (1, 2, 3, 1, 2, 3, 1, 5)


# --- the transcription -------------------------------------------------------------------


def _ee_quiet() -> warnings.catch_warnings:  # type: ignore[type-arg]
    caught = warnings.catch_warnings()
    caught.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)
    return caught


def ref_two_tailed_pvalue(x: np.ndarray) -> np.ndarray:
    """:26-59 (A&S 26.2.17; b4 as in A&S, see the module docstring)."""
    b1, b2, b3, b4, b5 = 0.319381530, -0.356563782, 1.781477937, -1.821255978, 1.330274429
    t = 1.0 / (1.0 + 0.2316419 * x)
    phi = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    cdf = 1.0 - phi * (t * (b1 + t * (b2 + t * (b3 + t * (b4 + t * b5)))))
    return np.maximum(2.0 * (1.0 - cdf), 1e-10)


def ref_ttest(pre: np.ndarray, post: np.ndarray, ttest_type: str) -> dict[str, np.ndarray]:
    """:106-165 on one orbit's (time, band, y, x) log images."""
    pre_mean, post_mean = np.nanmean(pre, 0), np.nanmean(post, 0)
    pre_sd, post_sd = np.nanstd(pre, 0), np.nanstd(post, 0)  # ee stdDev: ddof 0
    pre_n = np.sum(~np.isnan(pre[:, 0]), 0).astype(float)
    post_n = np.sum(~np.isnan(post[:, 0]), 0).astype(float)
    if ttest_type == "welch":
        var_pre_n, var_post_n = pre_sd**2 / pre_n, post_sd**2 / post_n
        sum_var = var_pre_n + var_post_n
        denom = np.sqrt(sum_var)
        df = sum_var**2 / (var_pre_n**2 / (pre_n - 1) + var_post_n**2 / (post_n - 1))
    else:
        pooled_sd = np.sqrt((pre_sd**2 * (pre_n - 1) + post_sd**2 * (post_n - 1))
                            / (pre_n + post_n - 2))
        denom = pooled_sd * np.sqrt(1 / pre_n + 1 / post_n)
        df = np.stack([pre_n + post_n - 2] * 2)
    change = np.abs((post_mean - pre_mean) / denom)
    p = ref_two_tailed_pvalue(change)
    valid = (pre_n >= 3) & (post_n >= 2)
    return {"change": np.where(valid, change, np.nan), "p": np.where(valid, p, np.nan),
            "df": np.where(valid, df, np.nan), "n_pre": pre_n, "n_post": post_n}


def ref_ztest(pre: np.ndarray, post: np.ndarray) -> dict[str, np.ndarray]:
    """:168-208: the latest post image (the mosaic of the newest-first collection)."""
    pre_mean, pre_sd = np.nanmean(pre, 0), np.nanstd(pre, 0)
    pre_n = np.sum(~np.isnan(pre[:, 0]), 0).astype(float)
    latest = np.full(pre_mean.shape, np.nan)
    for image in post:  # oldest first: each newer valid pixel replaces the older
        latest = np.where(np.isnan(image), latest, image)
    z = np.abs((latest - pre_mean) / pre_sd)
    p = ref_two_tailed_pvalue(z)
    valid = pre_n >= 3
    return {"change": np.where(valid, z, np.nan), "p": np.where(valid, p, np.nan),
            "n_pre": pre_n, "n_post": np.ones_like(pre_n)}


def ref_mahalanobis(pre: list[np.ndarray], post: list[np.ndarray]) -> dict[str, np.ndarray]:
    """:463-559 and :632-644 with the orbits' (time, band, y, x) log images."""
    pre_norm, post_norm = [], []
    for a, b in zip(pre, post, strict=True):
        if a.shape[0] == 0:
            continue  # has_pre (:477-485)
        mean, sd = np.nanmean(a, 0), np.maximum(np.nanstd(a, 0), 1e-10)
        pre_norm.append((a - mean) / sd)
        post_norm.append((b - mean) / sd)
    a, b = np.concatenate(pre_norm), np.concatenate(post_norm)
    n_a = np.sum(~np.isnan(a[:, 0]), 0).astype(float)
    n_b = np.sum(~np.isnan(b[:, 0]), 0).astype(float)
    m_a, m_b = np.nanmean(a, 0), np.nanmean(b, 0)
    p = a.shape[1]

    def cross_cov(coll: np.ndarray, mean: np.ndarray, n: np.ndarray, i: int, j: int
                  ) -> np.ndarray:
        return np.nanmean((coll[:, i] - mean[i]) * (coll[:, j] - mean[j]), 0) * n / (n - 1)

    s = np.empty((*SHAPE, p, p))
    for i, j in itertools.product(range(p), range(p)):
        s[..., i, j] = ((cross_cov(a, m_a, n_a, i, j) * (n_a - 1)
                         + cross_cov(b, m_b, n_b, i, j) * (n_b - 1)) / (n_a + n_b - 2))
    valid = (n_a >= 3) & (n_b >= 2)
    s[~valid] = np.eye(p)
    s_inv = np.full_like(s, np.nan)
    for i, j in np.ndindex(*SHAPE):  # Earth Engine's matrixInverse masks a singular pixel
        try:
            s_inv[i, j] = np.linalg.inv(s[i, j] + 1e-10 * np.eye(p))
        except np.linalg.LinAlgError:
            pass
    d = np.moveaxis(m_b - m_a, 0, -1)
    quad = np.einsum("yxi,yxij,yxj->yx", d, s_inv, d)
    t2 = n_a * n_b / (n_a + n_b) * quad
    return {"change": np.where(valid, np.sqrt(quad), np.nan),
            "p": np.where(valid, np.maximum(np.exp(-0.5 * t2), 1e-10), np.nan),
            "n_pre": n_a, "n_post": n_b}


def reference_pwtt(pre: np.ndarray, post: np.ndarray, *, method: str, ttest_type: str,
                   lee_mode: str) -> dict[str, np.ndarray]:
    """`detect_damage` (:374) up to `max_change`, `p_value`, `n_pre`, `n_post`."""
    def log_images(stack: np.ndarray) -> np.ndarray:
        # make_s1 (:410-418): Lee per image with lee_mode 'per_image', then log
        out = np.empty(stack.shape)
        for t, b in itertools.product(range(stack.shape[0]), range(stack.shape[1])):
            image = stack[t, b].astype(np.float64)
            if lee_mode == "per_image":
                image = lee_filter_reference(image.astype(np.float32), 3, 5.0).astype(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[t, b] = np.log(image)
        out[~np.isfinite(out)] = np.nan
        return out

    pre_orbits, post_orbits = np.array(PRE_ORBITS), np.array(POST_ORBITS)
    groups = sorted(set(POST_ORBITS))  # orbits with post-window images (:402-408)
    pre_log, post_log = log_images(pre), log_images(post)
    pre_by = [pre_log[pre_orbits == g] for g in groups]
    post_by = [post_log[post_orbits == g] for g in groups]
    caught = _ee_quiet()
    try:
        if method == "mahalanobis":
            r = ref_mahalanobis(pre_by, post_by)
            return {"statistic": r["change"], "p_value": r["p"], "n_pre": r["n_pre"],
                    "n_post": r["n_post"]}
        if method == "ztest":
            orbit_images = [ref_ztest(a, b) for a, b in zip(pre_by, post_by, strict=True)]
        else:
            orbit_images = [ref_ttest(a, b, ttest_type)
                            for a, b in zip(pre_by, post_by, strict=True)]
        if method == "stouffer":  # :721-741
            df = np.stack([np.maximum(o["df"][0], o["df"][1]) for o in orbit_images])
            w = np.sqrt(df)
            sum_w_sq = np.nansum(df, 0)
            any_w = (~np.isnan(df)).any(0)
            z = [np.where(any_w, np.nansum(np.stack([o["change"][k] for o in orbit_images]) * w,
                                           0) / np.sqrt(sum_w_sq), np.nan) for k in (0, 1)]
            max_change = np.maximum(z[0], z[1])
            p_value = np.minimum(ref_two_tailed_pvalue(max_change) * 2, 1)
            n_pre = np.sum([o["n_pre"] for o in orbit_images], 0)
            n_post = np.sum([o["n_post"] for o in orbit_images], 0)
        else:  # 'max' and 'ztest', :743-754
            t_max = np.nanmax(np.stack([o["change"] for o in orbit_images]), 0)
            p_min = np.nanmin(np.stack([o["p"] for o in orbit_images]), 0)
            n_pre = np.max([o["n_pre"] for o in orbit_images], 0)
            n_post = np.max([o["n_post"] for o in orbit_images], 0)
            max_change = np.maximum(t_max[0], t_max[1])
            p_value = np.minimum(np.minimum(p_min[0], p_min[1]) * len(groups), 1)
    finally:
        caught.__exit__(None, None, None)
    return {"statistic": max_change, "p_value": p_value, "n_pre": n_pre, "n_post": n_post}


# --- the comparison ----------------------------------------------------------------------


def _stacks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear sigma0 (time, VV/VH, y, x) with a destroyed block and shared nodata (S1's VV
    and VH are nodata together), some pixels without enough dates."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(4.0, 0.02, size=(1, 2, *SHAPE))
    pre = base * rng.gamma(5.0, 0.2, size=(len(PRE_ORBITS), 2, *SHAPE))
    post = base * rng.gamma(5.0, 0.2, size=(len(POST_ORBITS), 2, *SHAPE))
    post[:, :, 6:14, 5:12] *= 0.25
    for stack in (pre, post):
        holes = rng.random((stack.shape[0], 1, *SHAPE)) < 0.12
        stack[np.broadcast_to(holes, stack.shape)] = np.nan
    return pre.astype(np.float32), post.astype(np.float32)


def _no_orbit_with_one_pre_value(pre: np.ndarray) -> np.ndarray:
    orbits = np.array(PRE_ORBITS)
    counts = [np.sum(~np.isnan(pre[orbits == g, 0]), 0) for g in set(POST_ORBITS) - {5}]
    return ~np.any(np.stack(counts) == 1, axis=0)


def _context() -> ScoreContext:
    return ScoreContext(bands=("VV", "VH"), pre_orbits=PRE_ORBITS, post_orbits=POST_ORBITS,
                        pixel_size_m=10.0)


CASES = [
    *[("t", c, tt, lee) for c, tt, lee in itertools.product(
        ("stouffer", "max"), ("welch", "pooled"), ("per_image", "composite"))],
    *[("z", "max", "welch", lee) for lee in ("per_image", "composite")],
    ("mahalanobis", "stouffer", "welch", "per_image"),
]


@pytest.mark.parametrize(("statistic", "combination", "ttest", "lee_mode"), CASES)
def test_pwtt_equals_reference_transcription(statistic: str, combination: str, ttest: str,
                                             lee_mode: str) -> None:
    pre, post = _stacks(seed=len(statistic) + len(combination) + len(ttest) + len(lee_mode))
    params = PwttParams(statistic=statistic, orbit_combination=combination, ttest=ttest,
                        lee_mode=lee_mode)
    got = pwtt_layers(pre, post, params, _context())
    method = {"t": combination, "z": "ztest", "mahalanobis": "mahalanobis"}[statistic]
    want = reference_pwtt(pre, post, method=method, ttest_type=ttest, lee_mode=lee_mode)
    if statistic == "mahalanobis":
        # where an orbit has one pre value the reference normalises by its 1e-10 sd floor
        # (values of 1e10, a covariance singular to float64); pwtt leaves that orbit out
        # there: compare elsewhere
        defined = _no_orbit_with_one_pre_value(pre)
        for layers in (got.extra, want):
            for name in ("p_value", "n_pre", "n_post"):
                layers[name] = np.where(defined, layers[name], np.nan)  # type: ignore[index]
        want["statistic"] = np.where(defined, want["statistic"], np.nan)
        got = type(got)(np.where(defined, got.score, np.nan), got.extra)
        assert defined.mean() > 0.8
    stat = want["statistic"]
    assert np.isfinite(stat).mean() > 0.5  # most pixels are scored, some are not
    assert np.isnan(stat).any()
    valid = np.isfinite(stat)
    # the statistic before smoothing is not a layer: recomputed from the reference's, the
    # score must match wherever the statistic does
    if statistic == "mahalanobis":
        stat = pwtt_statistic(pre, post, params, _context()).statistic
    want_score = smooth_statistic(stat.astype(np.float32), params, 10.0)
    want_score[~valid] = np.nan
    np.testing.assert_allclose(got.score, want_score, rtol=1e-3, atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(got.extra["p_value"], want["p_value"], rtol=1e-3, atol=1e-3,
                               equal_nan=True)
    if statistic == "z":  # n_post: 1 where a post image is (module docstring)
        np.testing.assert_array_equal(got.extra["n_post"][valid], want["n_post"][valid])
    else:
        np.testing.assert_allclose(got.extra["n_post"], want["n_post"], atol=1e-3)
    np.testing.assert_allclose(got.extra["n_pre"], want["n_pre"], atol=1e-3)


@pytest.mark.parametrize("statistic", ["t", "mahalanobis"])
def test_pwtt_statistic_equals_reference_before_smoothing(statistic: str) -> None:
    pre, post = _stacks(seed=11)
    params = PwttParams(statistic=statistic)
    got = pwtt_statistic(pre, post, params, _context())
    want = reference_pwtt(pre, post, method="stouffer" if statistic == "t" else statistic,
                          ttest_type="welch", lee_mode="per_image")
    defined = _no_orbit_with_one_pre_value(pre) if statistic == "mahalanobis" else True
    np.testing.assert_allclose(np.where(defined, got.statistic, np.nan),
                               np.where(defined, want["statistic"], np.nan), rtol=1e-3,
                               atol=1e-3, equal_nan=True)


def test_pwtt_refuses_one_post_date_a_pixel_and_names_the_z_test() -> None:
    with pytest.raises(ValueError, match="statistic = 'z'"):
        PwttParams(min_post=1)
    with pytest.raises(ValueError, match="greater than or equal to 2"):  # the pre spread
        PwttParams(min_pre=1)
    assert PwttParams(statistic="z").min_post == 1


def test_pwtt_refuses_orbits_with_one_date_a_side_before_work() -> None:
    from ruinmap.cluster.methods.pwtt import check_orbit_dates

    with pytest.raises(SpecError, match=r"orbit 1: 1 pre, 1 post.*statistic = 'z'"):
        check_orbit_dates(PwttParams(), (1,), (1,))
    with pytest.raises(SpecError, match="orbit 1: 3 pre, 1 post"):
        check_orbit_dates(PwttParams(), (1, 1, 1), (1,))
    check_orbit_dates(PwttParams(statistic="z", min_pre=2), (1, 1), (1,))  # z: one post


def test_pwtt_z_scores_a_single_post_image() -> None:
    pre, post = _stacks(seed=3)
    ctx = ScoreContext(bands=("VV", "VH"), pre_orbits=PRE_ORBITS, post_orbits=(1,),
                       pixel_size_m=10.0)
    post[0, :, 6:14, 5:12] = pre[:3, :, 6:14, 5:12].mean(axis=0) * 0.05  # a collapse
    got = pwtt_layers(pre, post[:1], PwttParams(statistic="z"), ctx)
    assert np.isfinite(got.score).mean() > 0.5
    assert np.nanmean(got.score[8:12, 7:10]) > 3.3 > np.nanmedian(got.score[16:, 14:])
    assert set(np.unique(got.extra["n_post"][np.isfinite(got.score)])) == {1.0}
