"""The accuracy gate: does a converted model lose top-1? Decided by evidence.

The float and the converted model classify the same images, so their
correctness is paired: only the images where exactly one of them is right
(`b`: float right, converted wrong; `c`: the reverse) carry information.
The drop is `(b - c) / n`; its confidence interval is Newcombe's hybrid
score interval for paired proportions (Newcombe 1998, method 10) and the
exact McNemar test gives the p-value of "no drop". The gate fails when the
whole interval lies above the allowed drop, so a one-image wobble passes on
any number of images and a drop of 20 images out of 360 fails.

Pure NumPy (no TensorFlow): it also judges Keras-vs-Keras comparisons.
"""

import math

import numpy as np

DEFAULT_CONFIDENCE = 0.95


def _normal_quantile(p):
    """Inverse standard normal CDF (Acklam's rational approximation, ~1e-9)."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00)
    low = 0.02425
    if p < low or p > 1 - low:
        q = math.sqrt(-2 * math.log(p if p < low else 1 - p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        return x if p < low else -x
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def wilson_interval(successes, n, z):
    """Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def paired_difference_interval(a, b, c, d, confidence=DEFAULT_CONFIDENCE):
    """Newcombe's interval for `p1 - p2` from a paired 2x2 table.

    Args:
        a, b, c, d: ints; both right, only the first right, only the second
            right, both wrong.
        confidence: float, the interval's coverage.

    Returns:
        `(low, high)` of `(b - c) / n`, as fractions.
    """
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    z = _normal_quantile(0.5 + confidence / 2)
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    denominator = math.sqrt(float((a + b) * (c + d) * (a + c) * (b + d)))
    if denominator == 0:
        phi = 0.0
    else:
        numerator = a * d - b * c
        phi = (max(numerator - n / 2, 0) if numerator > 0 else numerator) / denominator
    difference = p1 - p2
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0))
    epsilon = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0))
    return max(difference - delta, -1.0), min(difference + epsilon, 1.0)


def mcnemar_exact_p(b, c):
    """Two-sided exact McNemar p-value: `b` vs `c` discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_gate(reference_correct, candidate_correct, max_drop=1.0,
                confidence=DEFAULT_CONFIDENCE):
    """Passes or fails a converted model on paired per-image correctness.

    Args:
        reference_correct: bool array (N,), whether the float model's top-1
            is right on each image.
        candidate_correct: bool array (N,), the same for the converted model
            on the same images.
        max_drop: float, the allowed top-1 drop in points.
        confidence: float, coverage of the interval on the drop.

    Returns:
        dict: `status` ("pass" | "fail" | "warn"), `drop_points`,
        `interval_points` ([low, high]), `confidence`, `mcnemar_p`,
        `only_reference_right` (b), `only_candidate_right` (c),
        `num_images`, `max_drop_points`, `reason`. "fail": the interval lies
        wholly above `max_drop`; "warn": the drop exceeds `max_drop` but the
        images cannot show it; "pass" otherwise.

    Raises:
        ValueError: arrays of different lengths.

    Example:

    >>> ref = np.ones(360, bool)
    >>> paired_gate(ref, np.arange(360) >= 1)["status"]   # one image
    'pass'
    >>> paired_gate(ref, np.arange(360) >= 20)["status"]  # twenty images
    'fail'
    """
    ref = np.asarray(reference_correct, bool).reshape(-1)
    cand = np.asarray(candidate_correct, bool).reshape(-1)
    if ref.shape != cand.shape:
        raise ValueError(
            f"reference_correct has {ref.size} images and candidate_correct "
            f"{cand.size}: the gate compares the same images.")
    n = int(ref.size)
    result = {"status": "warn", "num_images": n, "max_drop_points": float(max_drop),
              "confidence": float(confidence)}
    if n == 0:
        result["reason"] = "no evaluation images: nothing to judge"
        return result
    a = int(np.sum(ref & cand))
    b = int(np.sum(ref & ~cand))
    c = int(np.sum(~ref & cand))
    d = n - a - b - c
    low, high = paired_difference_interval(a, b, c, d, confidence)
    drop = 100.0 * (b - c) / n
    result.update({
        "drop_points": round(drop, 3),
        "interval_points": [round(100 * low, 3), round(100 * high, 3)],
        "mcnemar_p": float(mcnemar_exact_p(b, c)),
        "only_reference_right": b,
        "only_candidate_right": c,
    })
    summary = (f"top-1 fell {drop:.2f} points ({100 * confidence:.0f}% interval "
               f"{100 * low:.2f} to {100 * high:.2f}; {b} images lost, {c} gained, "
               f"of {n}; exact McNemar p={result['mcnemar_p']:.2g})")
    if 100 * low > max_drop:
        result["status"] = "fail"
        result["reason"] = (
            f"{summary}: more than the allowed {max_drop} points beyond doubt; "
            "try quantization-aware training (train --qat_epochs), "
            "--mode=int16x8 or more calibration images")
    elif drop > max_drop:
        result["reason"] = (
            f"{summary}: above the allowed {max_drop} points, but these "
            "images cannot show it; evaluate on more images")
    else:
        result["status"] = "pass"
        result["reason"] = f"{summary}: within the allowed {max_drop} points"
    return result
