// A small multilayer perceptron trained in the engine: [input batch-norm] -> (linear -> [batch-norm] -> ReLU) x H
// -> linear. Two heads:
//  - Mixture (the learned cluster map, paper §5.2): z = softmax(logits) over K clusters; for a prompt with outcomes
//    of LLM m, gamma = z . Psi_m is its predicted error; loss = log loss of gamma against the 0/1 error.
//  - Sigmoid (the retrained-MLP baseline): one output per LLM, p = sigmoid(logit) its predicted error; log loss.
// Labels are n x M errors in [0, 1] with NaN for "no outcome". Adam, minibatches, early stopping; seeded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"

namespace uniroute {

enum class Head { Mixture = 0, Sigmoid = 1 };

struct MlpConfig {
  uint32_t in = 0;
  uint32_t out = 0;
  std::vector<uint32_t> hidden;
  bool batchnorm = true;  // batch-norm after each hidden linear layer
  bool input_bn = true;   // batch-norm of the input
  Head head = Head::Mixture;
  size_t param_count() const;  // trainable parameters + running statistics, in one flat vector
};

struct MlpTrainOptions {
  float lr = 0.005f;
  uint32_t batch = 64;
  uint32_t epochs = 5;
  uint32_t patience = 2;  // early stopping: epochs without improvement on the held-out rows
  float weight_decay = 0.0f;
  uint64_t seed = 1;
};

struct MlpTrainReport {
  std::vector<float> train_loss;
  std::vector<float> val_loss;
  uint32_t best_epoch = 0;
};

// Initialises parameters (He init for linear layers, BN gamma = 1, beta = 0, running var = 1).
void mlp_init(const MlpConfig& cfg, uint64_t seed, std::vector<float>& params);

// Forward pass in evaluation mode (running statistics) for n rows: out = softmax (Mixture) or sigmoid (Sigmoid).
Status mlp_forward(const MlpConfig& cfg, const float* params, const float* X, size_t n, float* out, int threads);

// psi: M x K error vectors (Mixture head only; K = cfg.out). Y: n x M errors, NaN = none.
// Xv/Yv (may be null, nv = 0): held-out rows for early stopping; the best epoch's parameters are kept.
Status mlp_train(const MlpConfig& cfg, std::vector<float>& params, const float* X, const float* Y, size_t n, size_t M,
                 const float* psi, const float* Xv, const float* Yv, size_t nv, const MlpTrainOptions& opt,
                 MlpTrainReport& report);

// Mean loss and (optionally) its gradient w.r.t. every trainable parameter for one batch in training mode
// (batch statistics). Exposed for the finite-difference test. grad has param_count() entries (0 for running stats).
double mlp_loss_grad(const MlpConfig& cfg, const std::vector<float>& params, const float* X, const float* Y, size_t n,
                     size_t M, const float* psi, std::vector<float>* grad);

// The largest network accepted (1 GiB of float parameters): a bigger one is refused before any allocation.
constexpr size_t kMaxMlpParams = size_t(1) << 28;

Status mlp_validate(const MlpConfig& cfg);

}  // namespace uniroute
