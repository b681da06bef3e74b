// C++: objects with members, every operator new form, new[] of objects
// with destructors (count cookie before the array), multiple inheritance.
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

struct Widget {
  std::string name;
  std::vector<int> values;
  Widget(const char *n, int k) : name(n), values(k, 7) {}
};
struct Counted {
  int v = 0;
  ~Counted() { v = -1; }
};
struct A { virtual ~A() {} long a = 1; };
struct B { virtual ~B() {} long b = 2; };
struct C : A, B { long c = 3; };
struct alignas(64) Aligned { char x[64]; };

void *volatile sink;
B *volatile as_b; // points into the middle of a C: kept by the heuristic

__attribute__((noinline)) void leak_widget() {
  Widget *w = new Widget("a widget with a long enough name to allocate", 20); /* LEAK(definitely_lost) */
  sink = w;
  sink = nullptr;
}
__attribute__((noinline)) void leak_forms() {
  sink = new int[10];                          /* LEAK(definitely_lost) */
  sink = new (std::nothrow) long;              /* LEAK(definitely_lost) */
  sink = new (std::nothrow) char[33];          /* LEAK(definitely_lost) */
  sink = new Aligned;                          /* LEAK(definitely_lost) */
  sink = new Aligned[2];                       /* LEAK(definitely_lost) */
  sink = new (std::nothrow) Aligned;           /* LEAK(definitely_lost) */
  sink = nullptr;
}
__attribute__((noinline)) void leak_counted_array() {
  Counted *c = new Counted[5]; /* LEAK(definitely_lost) */
  sink = c;
  sink = nullptr;
}
__attribute__((noinline)) void keep_via_base() {
  C *c = new C;
  as_b = c; // interior pointer to the B sub-object
}
__attribute__((noinline)) void no_leak() {
  Widget *w = new Widget("short", 3);
  delete w;
  Counted *c = new Counted[3];
  delete[] c;
  Aligned *a = new Aligned;
  delete a;
  std::vector<std::string> v(100, std::string(100, 'x'));
  sink = &v;
  sink = nullptr;
}

int main() {
  leak_widget();
  leak_forms();
  leak_counted_array();
  keep_via_base();
  no_leak();
  return 0;
}
