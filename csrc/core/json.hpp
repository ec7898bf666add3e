// A small, strict JSON reader for safetensors headers and model configs (internal).
// Never crashes on bad input: depth and size limits, every error is a FormatError.
// Checked by tests/test_native_format.py (tampered headers) through Model::load.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace seqfuse {
namespace json {

struct Value {
  enum Type { Null, Bool, Number, String, Array, Object } type = Null;
  bool b = false;
  double num = 0.0;
  bool is_int = false;  // the literal had no fraction/exponent and fits int64
  int64_t i = 0;
  std::string str;
  std::vector<Value> arr;
  std::vector<std::pair<std::string, Value>> obj;

  const Value* find(const std::string& key) const;  // objects only; null if absent
};

// Parses a complete JSON text; throws FormatError("<what>: ...") on any error.
Value parse(const std::string& text, const char* what);
std::string quote(const std::string& s);  // JSON string literal

}  // namespace json
}  // namespace seqfuse
