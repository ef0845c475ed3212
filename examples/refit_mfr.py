"""MATLAB's ``refit`` example in Python: fit a Poisson GLMM, simulate a new response, refit.

MATLAB::

    glme = fitglme(mfr,'defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)', ...
        'Distribution','Poisson','Link','log','FitMethod','Laplace','DummyVarCoding','effects');
    rng(0,'twister'); ynew = random(glme); glme = refit(glme,ynew)

The code is ``ppl_glmm/demo.py`` (also run by ``ppl-glmm demo``).
"""

from ppl_glmm.demo import main

if __name__ == "__main__":
    main()
