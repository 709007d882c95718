// Prompt embedder: hashed n-gram features -> sublinear tf x IDF -> projection to D dims -> L2 normalisation.
//
// Feature specification (mirrored exactly by src/embed/reference.ts):
//  1. Normalise the UTF-8 bytes: ASCII 'A'-'Z' lower-cased; every run of ASCII white space (space, \t, \n, \v,
//     \f, \r) becomes one space; leading and trailing white space is dropped. Other bytes are kept as they are.
//  2. Tokens: maximal runs of word bytes (ASCII letters and digits, and every byte >= 0x80), and every other
//     non-space byte as a one-byte token of its own.
//  3. Features: each token (word unigram), each pair of consecutive tokens (bigram), each window of char_n
//     bytes of the normalised text (a text shorter than char_n gives one window: itself).
//  4. Hashes: t = fnv1a32(token); unigram h = t ^ 0x5bd1e995; bigram h = (t_prev * 0x9E3779B1) ^ t ^ 0x27d4eb2f;
//     char window h = fnv1a32(window) ^ 0x165667b1; bucket = (h * 0x9E3779B1 mod 2^32) >> (32 - buckets_log2)
//     (Fibonacci hashing: the top bits of one multiplication).
//  5. Weight of a distinct bucket seen c times: 1 + ln(c). Its projection row carries IDF and a per-row scale.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"
#include "kernels.h"  // Feature

namespace uniroute {

struct EmbedConfig {
  uint32_t buckets_log2 = 16;
  uint32_t dim = 256;
  uint32_t char_n = 4;
  size_t buckets() const { return size_t{1} << buckets_log2; }
};

struct TextRef {
  const char* data;
  size_t len;
};

inline uint32_t fnv1a32(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// Turns a text into its distinct hashed features. Holds scratch space: one per thread.
class FeatureExtractor {
 public:
  explicit FeatureExtractor(const EmbedConfig& cfg);
  // Clears out and appends the distinct features of the text, in order of first occurrence.
  void extract(const char* text, size_t len, std::vector<Feature>& out);
  uint32_t buckets_log2() const { return cfg_.buckets_log2; }
  uint32_t char_n() const { return cfg_.char_n; }

  // This thread's extractor for cfg, kept between calls: its scratch table (2^bucketsLog2 counters, 256 KiB at
  // the default) is allocated and zeroed once per thread rather than once per call, which dominated routing one
  // prompt at a time. extract() leaves the table zeroed; one that did not finish (an allocation failure) is rebuilt.
  static FeatureExtractor& for_thread(const EmbedConfig& cfg);

 private:
  bool busy_ = false;  // inside extract(): the scratch table may not be zeroed
  EmbedConfig cfg_;
  uint32_t shift_;
  std::vector<uint32_t> counts_;
  std::vector<uint32_t> touched_;
  std::vector<uint8_t> norm_;
};

// An allocator for the projection table: a table of 2 MiB or more is aligned to 2 MiB and advised for transparent
// huge pages (Linux), so that its rows, read at random, take a few TLB entries instead of thousands of 4 KiB ones.
// Where huge pages are off (or not Linux) it is ordinary memory. Contents are unaffected.
template <typename T>
struct HugePageAllocator {
  typedef T value_type;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n);
  void deallocate(T* p, size_t n);
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }
};
void* huge_page_alloc(size_t bytes);
void huge_page_free(void* p, size_t bytes);
template <typename T>
T* HugePageAllocator<T>::allocate(size_t n) {
  return static_cast<T*>(huge_page_alloc(n * sizeof(T)));
}
template <typename T>
void HugePageAllocator<T>::deallocate(T* p, size_t n) {
  huge_page_free(p, n * sizeof(T));
}

// The fitted embedder: for every bucket a row of `dim` int8 values and a float scale (IDF folded in).
struct Projection {
  EmbedConfig cfg;
  uint64_t id = 0;  // unique per fitted table (0 = none): lets a device backend cache its copy
  std::vector<int8_t, HugePageAllocator<int8_t>> q;  // buckets x dim, row-major
  std::vector<float> scale;  // buckets
  Status validate() const;
};

// Embeds one text into out[dim] (L2-normalised; all zeros when no feature of the text is known).
void embed_one(const Projection& p, FeatureExtractor& fx, std::vector<Feature>& feats, const char* text, size_t len,
               float* out);

Status embed_batch(const Projection& p, const TextRef* texts, size_t n, float* out, int threads);

// A fresh id for a Projection (process-wide counter).
uint64_t next_projection_id();

struct EmbedFitOptions {
  uint64_t seed = 1;
  uint32_t min_df = 2;       // buckets seen in fewer training texts get a zero row (used only when n >= 20)
  uint32_t power_iters = 3;  // randomized SVD power iterations
  uint32_t oversample = 16;
  int threads = 0;
};

struct EmbedFitReport {
  size_t texts = 0;
  size_t kept_buckets = 0;
  size_t rank = 0;
  std::vector<float> singular_values;
};

// Fits IDF and a truncated-SVD (LSA) projection of the L2-normalised TF-IDF matrix of the texts.
Status fit_projection(const TextRef* texts, size_t n, const EmbedConfig& cfg, const EmbedFitOptions& opt,
                      Projection& out, EmbedFitReport& report);

}  // namespace uniroute
