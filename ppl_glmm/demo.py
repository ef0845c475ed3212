"""The seed example (also examples/refit_mfr.py): fit a Poisson GLMM, simulate a new response, refit.

MATLAB::

    glme = fitglme(mfr,'defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)', ...
        'Distribution','Poisson','Link','log','FitMethod','Laplace','DummyVarCoding','effects');
    rng(0,'twister'); ynew = random(glme); glme = refit(glme,ynew)
"""

import ppl_glmm
from ppl_glmm.datasets import load_mfr


def main() -> None:
    mfr = load_mfr()
    glme = ppl_glmm.fitglme(
        mfr,
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
        distribution="Poisson",
        link="log",
        fit_method="Laplace",
        dummy_var_coding="effects",
    )
    print(glme)

    ynew = glme.random(rng=0)  # a seed or a numpy Generator; same seed, same draw
    glme_new = glme.refit(ynew)  # no recompilation: swaps the observed pm.Data and re-optimises
    print(glme_new)

    _, _, stats = glme_new.covariance_parameters()
    print("Covariance parameters with 95% Wald CIs:")
    for table in stats:
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
