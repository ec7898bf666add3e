// Validating safetensors reader for seqfuse weight files (format: docs/FORMAT.md).
// Everything is checked before any tensor is used: header size, JSON, dtypes, shapes,
// offsets (in range, contiguous, non-overlapping), metadata format/version and config.
// Checked by tests/test_native_format.py (truncated, tampered and foreign files).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/internal.hpp"
#include "core/json.hpp"

namespace seqfuse {

namespace {
[[noreturn]] void bad(const std::string& path, const std::string& msg) {
  throw FormatError(path + ": " + msg);
}
}  // namespace

void read_weight_file(const std::string& path, Config& config,
                      std::map<std::string, Tensor>& weights) {
  std::ifstream f(path, std::ios::binary);
  if (!f) bad(path, "cannot open weight file");
  f.seekg(0, std::ios::end);
  const std::streamoff fsize = f.tellg();
  f.seekg(0, std::ios::beg);
  if (fsize < 8)
    bad(path, "file too short to be a safetensors file (" + std::to_string(fsize) + " bytes)");
  unsigned char hb[8];
  f.read(reinterpret_cast<char*>(hb), 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | hb[i];
  if (hlen == 0 || hlen > uint64_t(fsize) - 8 || hlen > (uint64_t(100) << 20))
    bad(path, "header size " + std::to_string(hlen) + " does not fit the file (" +
                  std::to_string(fsize) + " bytes): truncated or not a safetensors file");
  std::string header(size_t(hlen), '\0');
  f.read(&header[0], std::streamsize(hlen));
  if (!f) bad(path, "could not read the header");
  json::Value h = json::parse(header, (path + " header").c_str());
  if (h.type != json::Value::Object) bad(path, "header is not a JSON object");

  const json::Value* meta = h.find("__metadata__");
  if (!meta || meta->type != json::Value::Object)
    bad(path, "no __metadata__: not a seqfuse weight file");
  auto meta_str = [&](const char* key) -> std::string {
    const json::Value* v = meta->find(key);
    if (!v || v->type != json::Value::String)
      bad(path, std::string("metadata '") + key + "' missing: not a seqfuse weight file");
    return v->str;
  };
  if (meta_str("format") != kFormatName)
    bad(path, "metadata format is '" + meta_str("format") + "', expected '" + kFormatName + "'");
  const std::string version = meta_str("version");
  int vnum = 0;
  for (int k = 1; k <= kFormatVersion; ++k)
    if (version == std::to_string(k)) vnum = k;
  if (vnum == 0)
    bad(path, "format version " + version + " is not supported (this build reads 1 to " +
                  std::to_string(kFormatVersion) + ")");
  config = Config::from_json(meta_str("config"));
  if (vnum < 2 && !config.onnx_extensions().empty())
    bad(path, "format version 1 has no " + config.onnx_extensions() + " (version 2 does)");
  if (vnum < 2 && config.proj_size > 0) bad(path, "format version 1 has no proj_size");

  const uint64_t data_size = uint64_t(fsize) - 8 - hlen;
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& kv : h.obj) {
    if (kv.first == "__metadata__") continue;
    const json::Value& t = kv.second;
    const std::string& name = kv.first;
    if (t.type != json::Value::Object) bad(path, "tensor '" + name + "' entry is not an object");
    const json::Value* dt = t.find("dtype");
    const json::Value* sh = t.find("shape");
    const json::Value* off = t.find("data_offsets");
    if (!dt || dt->type != json::Value::String || !sh || sh->type != json::Value::Array || !off ||
        off->type != json::Value::Array || off->arr.size() != 2)
      bad(path, "tensor '" + name + "' needs dtype, shape and data_offsets [begin, end]");
    if (dt->str != "F32")
      bad(path, "tensor '" + name + "' has dtype " + dt->str + "; only F32 is supported");
    Entry e{name, {}, 0, 0};
    uint64_t numel = 1;
    for (const auto& d : sh->arr) {
      if (d.type != json::Value::Number || !d.is_int || d.i < 0 || d.i > (int64_t(1) << 31))
        bad(path, "tensor '" + name + "' has an invalid shape");
      e.shape.push_back(d.i);
      numel *= uint64_t(d.i);
      if (numel > (uint64_t(1) << 32)) bad(path, "tensor '" + name + "' is too large");
    }
    for (int k = 0; k < 2; ++k) {
      const auto& o = off->arr[size_t(k)];
      if (o.type != json::Value::Number || !o.is_int || o.i < 0)
        bad(path, "tensor '" + name + "' has invalid data_offsets");
    }
    e.begin = uint64_t(off->arr[0].i);
    e.end = uint64_t(off->arr[1].i);
    if (e.begin > e.end || e.end > data_size)
      bad(path, "tensor '" + name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                    std::to_string(e.end) + "] are outside the " + std::to_string(data_size) +
                    "-byte data section (truncated file?)");
    if (e.end - e.begin != numel * 4)
      bad(path, "tensor '" + name + "' has " + std::to_string(e.end - e.begin) +
                    " bytes but its shape needs " + std::to_string(numel * 4));
    entries.push_back(std::move(e));
  }
  // The data section must be covered exactly: sorted by offset, no overlap, no holes.
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
  });
  uint64_t pos = 0;
  for (const Entry* e : order) {
    if (e->begin < pos) bad(path, "tensor '" + e->name + "' overlaps another tensor");
    if (e->begin > pos) bad(path, "hole in the data section before tensor '" + e->name + "'");
    pos = e->end;
  }
  if (pos != data_size)
    bad(path, "data section has " + std::to_string(data_size - pos) + " trailing bytes");

  std::map<std::string, Tensor> out;
  const std::streamoff base = std::streamoff(8 + hlen);
  for (const auto& e : entries) {
    Tensor t;
    t.shape = e.shape;
    t.data.resize(size_t((e.end - e.begin) / 4));
    f.seekg(base + std::streamoff(e.begin));
    if (!t.data.empty())
      f.read(reinterpret_cast<char*>(t.data.data()), std::streamsize(e.end - e.begin));
    if (!f) bad(path, "could not read tensor '" + e.name + "' (truncated file?)");
    out.emplace(e.name, std::move(t));
  }
  try {
    check_weights(config, out);
  } catch (const InvalidArgument& e) {
    bad(path, e.what());
  }
  weights = std::move(out);
}

void check_weights(const Config& config, const std::map<std::string, Tensor>& weights) {
  const auto need = config.weight_shapes();
  auto fmt = [](const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  };
  for (const auto& kv : need) {
    auto it = weights.find(kv.first);
    if (it == weights.end()) throw InvalidArgument("missing weight '" + kv.first + "'");
    if (it->second.shape != kv.second)
      throw InvalidArgument("weight '" + kv.first + "' has shape " + fmt(it->second.shape) +
                            ", the config needs " + fmt(kv.second));
    int64_t n = 1;
    for (int64_t d : kv.second) n *= d;
    if (int64_t(it->second.data.size()) != n)
      throw InvalidArgument("weight '" + kv.first + "' has " +
                            std::to_string(it->second.data.size()) + " values, expected " +
                            std::to_string(n));
    for (float v : it->second.data)
      if (!std::isfinite(v)) throw InvalidArgument("weight '" + kv.first + "' contains NaN or Inf");
  }
  for (const auto& kv : weights)
    if (!need.count(kv.first))
      throw InvalidArgument("unexpected weight '" + kv.first + "' for this config");
}

}  // namespace seqfuse
