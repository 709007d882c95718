// Householder tridiagonalisation + implicit QL (tred2 / tql2, after the public-domain JAMA / EISPACK routines).
#include "linalg.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace uniroute {

namespace {

void tred2(size_t n, std::vector<double>& V, std::vector<double>& d, std::vector<double>& e) {
  auto v = [&](size_t i, size_t j) -> double& { return V[i * n + j]; };
  for (size_t j = 0; j < n; j++) d[j] = v(n - 1, j);
  for (size_t i = n - 1; i > 0; i--) {
    double scale = 0.0, h = 0.0;
    for (size_t k = 0; k < i; k++) scale += std::fabs(d[k]);
    if (scale == 0.0) {
      e[i] = d[i - 1];
      for (size_t j = 0; j < i; j++) {
        d[j] = v(i - 1, j);
        v(i, j) = 0.0;
        v(j, i) = 0.0;
      }
    } else {
      for (size_t k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      double f = d[i - 1];
      double g = std::sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h = h - f * g;
      d[i - 1] = f - g;
      for (size_t j = 0; j < i; j++) e[j] = 0.0;
      for (size_t j = 0; j < i; j++) {
        f = d[j];
        v(j, i) = f;
        g = e[j] + v(j, j) * f;
        for (size_t k = j + 1; k <= i - 1; k++) {
          g += v(k, j) * d[k];
          e[k] += v(k, j) * f;
        }
        e[j] = g;
      }
      f = 0.0;
      for (size_t j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      double hh = f / (h + h);
      for (size_t j = 0; j < i; j++) e[j] -= hh * d[j];
      for (size_t j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (size_t k = j; k <= i - 1; k++) v(k, j) -= (f * e[k] + g * d[k]);
        d[j] = v(i - 1, j);
        v(i, j) = 0.0;
      }
    }
    d[i] = h;
  }
  for (size_t i = 0; i < n - 1; i++) {
    v(n - 1, i) = v(i, i);
    v(i, i) = 1.0;
    double h = d[i + 1];
    if (h != 0.0) {
      for (size_t k = 0; k <= i; k++) d[k] = v(k, i + 1) / h;
      for (size_t j = 0; j <= i; j++) {
        double g = 0.0;
        for (size_t k = 0; k <= i; k++) g += v(k, i + 1) * v(k, j);
        for (size_t k = 0; k <= i; k++) v(k, j) -= g * d[k];
      }
    }
    for (size_t k = 0; k <= i; k++) v(k, i + 1) = 0.0;
  }
  for (size_t j = 0; j < n; j++) {
    d[j] = v(n - 1, j);
    v(n - 1, j) = 0.0;
  }
  v(n - 1, n - 1) = 1.0;
  e[0] = 0.0;
}

void tql2(size_t n, std::vector<double>& V, std::vector<double>& d, std::vector<double>& e) {
  auto v = [&](size_t i, size_t j) -> double& { return V[i * n + j]; };
  for (size_t i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0.0;
  double f = 0.0, tst1 = 0.0;
  const double eps = std::pow(2.0, -52.0);
  for (size_t l = 0; l < n; l++) {
    tst1 = std::max(tst1, std::fabs(d[l]) + std::fabs(e[l]));
    // m stops at n - 1 whatever the values: with a NaN the test below is never true, and an m of n would read
    // d[n] and e[n] (EISPACK relies on e[n - 1] = 0 passing it)
    size_t m = l;
    while (m < n - 1) {
      if (std::fabs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      int iter = 0;
      do {
        iter++;
        double g = d[l];
        double p = (d[l + 1] - g) / (2.0 * e[l]);
        double r = std::hypot(p, 1.0);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        double dl1 = d[l + 1];
        double h = g - d[l];
        for (size_t i = l + 2; i < n; i++) d[i] -= h;
        f = f + h;
        p = d[m];
        double c = 1.0, c2 = c, c3 = c;
        double el1 = e[l + 1];
        double s = 0.0, s2 = 0.0;
        for (size_t ii = m; ii-- > l;) {
          size_t i = ii;
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = std::hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          for (size_t k = 0; k < n; k++) {
            h = v(k, i + 1);
            v(k, i + 1) = s * v(k, i) + c * h;
            v(k, i) = c * v(k, i) - s * h;
          }
        }
        p = -s * s2 * c3 * el1 * e[l] / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (std::fabs(e[l]) > eps * tst1 && iter < 100);
    }
    d[l] = d[l] + f;
    e[l] = 0.0;
  }
}

}  // namespace

Status sym_eigen(size_t n, const std::vector<double>& a, std::vector<double>& values, std::vector<double>& vectors) {
  values.assign(n, 0.0);
  vectors.assign(n * n, 0.0);
  if (a.size() < n * n) return Status::Invalid("sym_eigen: the matrix has fewer than n x n values");
  for (size_t i = 0; i < n * n; ++i)
    if (!std::isfinite(a[i])) return Status::Invalid("sym_eigen: the matrix has a non-finite value at index " + std::to_string(i));
  if (n == 0) return Status::Ok();
  if (n == 1) {
    values[0] = a[0];
    vectors[0] = 1.0;
    return Status::Ok();
  }
  std::vector<double> V(a), d(n), e(n);
  tred2(n, V, d, e);
  tql2(n, V, d, e);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return d[x] > d[y]; });
  for (size_t j = 0; j < n; j++) {
    values[j] = d[order[j]];
    for (size_t i = 0; i < n; i++) vectors[i * n + j] = V[i * n + order[j]];
  }
  return Status::Ok();
}

}  // namespace uniroute
