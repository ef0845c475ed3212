## The reference data sets as every R script reads them (source() from the repository root), so
## that R and Python fit exactly the same numbers with the same factor codings.
rd <- function(f, data_dir = "tests/reference/data") {
  read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)
}

read_mfr <- function() {  # MATLAB's mfr example: effects coding of supplier, levels C, B, A
  mfr <- rd("mfr.csv")
  mfr$factory <- factor(mfr$factory)
  mfr$supplier <- factor(mfr$supplier, levels = c("C", "B", "A"))
  contrasts(mfr$supplier) <- contr.sum(3)
  mfr
}

read_cbpp <- function() {
  d <- rd("cbpp.csv")
  d$herd <- factor(d$herd, levels = sort(unique(d$herd)))
  d$period <- factor(d$period, levels = c(1, 2, 3, 4))
  d
}

read_sleepstudy <- function() {
  d <- rd("sleepstudy.csv")
  d$Subject <- factor(d$Subject, levels = sort(unique(d$Subject)))
  d
}
