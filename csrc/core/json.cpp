// Strict recursive-descent JSON parser (see json.hpp). Checked by tests/test_native_format.py.
#include "core/json.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {
namespace json {

const Value* Value::find(const std::string& key) const {
  if (type != Object) return nullptr;
  for (const auto& kv : obj)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

struct Parser {
  const std::string& s;
  const char* what;
  size_t p = 0;

  [[noreturn]] void fail(const std::string& msg) const {
    throw FormatError(std::string(what) + ": invalid JSON (" + msg + " at byte " +
                      std::to_string(p) + ")");
  }
  void ws() {
    while (p < s.size() && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) ++p;
  }
  bool lit(const char* w) {
    size_t n = std::strlen(w);
    if (s.compare(p, n, w) == 0) {
      p += n;
      return true;
    }
    return false;
  }
  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (p + 4 > s.size()) fail("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[p++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= uint32_t(c - 'A' + 10);
      else
        fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    if (p >= s.size() || s[p] != '"') fail("expected a string");
    ++p;
    std::string out;
    while (true) {
      if (p >= s.size()) fail("unterminated string");
      char c = s[p++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= s.size()) fail("unterminated escape");
      char e = s[p++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!lit("\\u")) fail("lone surrogate");
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("lone surrogate");
          }
          utf8(out, cp);
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }
  Value number() {
    size_t start = p;
    bool integral = true;
    if (p < s.size() && s[p] == '-') ++p;
    if (p >= s.size() || !(s[p] >= '0' && s[p] <= '9')) fail("bad number");
    while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
    if (p < s.size() && s[p] == '.') {
      integral = false;
      ++p;
      if (p >= s.size() || !(s[p] >= '0' && s[p] <= '9')) fail("bad number");
      while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
    }
    if (p < s.size() && (s[p] == 'e' || s[p] == 'E')) {
      integral = false;
      ++p;
      if (p < s.size() && (s[p] == '+' || s[p] == '-')) ++p;
      if (p >= s.size() || !(s[p] >= '0' && s[p] <= '9')) fail("bad number");
      while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
    }
    std::string tok = s.substr(start, p - start);
    Value v;
    v.type = Value::Number;
    v.num = std::strtod(tok.c_str(), nullptr);
    if (integral && tok.size() <= 18) {
      v.is_int = true;
      v.i = std::strtoll(tok.c_str(), nullptr, 10);
    }
    return v;
  }
  Value value(int depth) {
    if (depth > 64) fail("nested too deeply");
    ws();
    if (p >= s.size()) fail("unexpected end");
    Value v;
    char c = s[p];
    if (c == '{') {
      ++p;
      v.type = Value::Object;
      ws();
      if (p < s.size() && s[p] == '}') {
        ++p;
        return v;
      }
      while (true) {
        ws();
        std::string key = string();
        for (const auto& kv : v.obj)
          if (kv.first == key) fail("duplicate key '" + key + "'");
        ws();
        if (p >= s.size() || s[p] != ':') fail("expected ':'");
        ++p;
        v.obj.emplace_back(std::move(key), value(depth + 1));
        ws();
        if (p < s.size() && s[p] == ',') {
          ++p;
          continue;
        }
        if (p < s.size() && s[p] == '}') {
          ++p;
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++p;
      v.type = Value::Array;
      ws();
      if (p < s.size() && s[p] == ']') {
        ++p;
        return v;
      }
      while (true) {
        v.arr.push_back(value(depth + 1));
        ws();
        if (p < s.size() && s[p] == ',') {
          ++p;
          continue;
        }
        if (p < s.size() && s[p] == ']') {
          ++p;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.type = Value::String;
      v.str = string();
      return v;
    }
    if (lit("true")) {
      v.type = Value::Bool;
      v.b = true;
      return v;
    }
    if (lit("false")) {
      v.type = Value::Bool;
      return v;
    }
    if (lit("null")) return v;
    return number();
  }
};

}  // namespace

// JSON text must be UTF-8: reject malformed sequences (overlong forms included).
static size_t bad_utf8_at(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (n < 0 || (n == 1 && c < 0xC2) || i + size_t(n) >= s.size() + (n == 0 ? 1 : 0)) return i;
    for (int k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + size_t(k)]) & 0xC0) != 0x80) return i;
    i += size_t(n) + 1;
  }
  return std::string::npos;
}

Value parse(const std::string& text, const char* what) {
  const size_t bad = bad_utf8_at(text);
  if (bad != std::string::npos)
    throw FormatError(std::string(what) + ": invalid UTF-8 at byte " + std::to_string(bad));
  Parser ps{text, what};
  Value v = ps.value(0);
  ps.ws();
  if (ps.p != text.size()) ps.fail("trailing characters");
  return v;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace json
}  // namespace seqfuse
