// ggml_ref: run ggml's own scalar reference quantizers/dequantizers on raw buffers.
//
// Built by tools/gguf/make_goldens.py against ggml/src/ggml-quants.c of the llama.cpp sources vendored in
// the llama-cpp-python sdist (tools/testdata/fetch.sh llamacpp), compiled without -march flags so no FMA
// contraction happens (the tern-gguf Rust ports keep ggml's operation order and match that build).
//
//   ggml_ref quantize   TYPE IN.f32 OUT.bin      (quantize_row_<type>_ref over the whole buffer)
//   ggml_ref dequantize TYPE IN.bin N OUT.f32    (dequantize_row_<type> for N elements)
//
// TYPE is one of q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K tq1_0 tq2_0.

#include "ggml.h"
#include "ggml-quants.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ggml-quants.c references a few symbols from ggml.c; the paths used here never reach them.
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ggml_abort %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; return "?"; }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }

typedef void (*quant_fn)(const float *, void *, int64_t);
typedef void (*dequant_fn)(const void *, float *, int64_t);

struct entry { const char * name; int block; int size; quant_fn q; dequant_fn dq; };

#define E(n, blk, sz) { #n, blk, sz, (quant_fn) quantize_row_##n##_ref, (dequant_fn) dequantize_row_##n }
static const struct entry table[] = {
    E(q4_0, 32, 18), E(q4_1, 32, 20), E(q5_0, 32, 22), E(q5_1, 32, 24), E(q8_0, 32, 34),
    E(q2_K, 256, 84), E(q3_K, 256, 110), E(q4_K, 256, 144), E(q5_K, 256, 176), E(q6_K, 256, 210),
    E(tq1_0, 256, 54), E(tq2_0, 256, 66),
};

static void * slurp(const char * path, long * len) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    rewind(f);
    void * buf = malloc(*len ? *len : 1);
    if (fread(buf, 1, *len, f) != (size_t) *len) { perror(path); exit(2); }
    fclose(f);
    return buf;
}

static void spit(const char * path, const void * buf, size_t len) {
    FILE * f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) { perror(path); exit(2); }
    fclose(f);
}

int main(int argc, char ** argv) {
    if (argc < 5) { fprintf(stderr, "usage: see source\n"); return 2; }
    const struct entry * e = NULL;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); ++i) {
        if (strcmp(table[i].name, argv[2]) == 0) e = &table[i];
    }
    if (!e) { fprintf(stderr, "unknown type %s\n", argv[2]); return 2; }
    long len;
    void * in = slurp(argv[3], &len);
    if (strcmp(argv[1], "quantize") == 0) {
        const int64_t n = len / 4;
        if (n % e->block) { fprintf(stderr, "n %lld not a multiple of %d\n", (long long) n, e->block); return 2; }
        const size_t out_len = (size_t) (n / e->block) * e->size;
        void * out = calloc(out_len ? out_len : 1, 1);
        e->q((const float *) in, out, n);
        spit(argv[4], out, out_len);
    } else if (strcmp(argv[1], "dequantize") == 0 && argc == 6) {
        const int64_t n = atoll(argv[4]);
        if (n % e->block || (n / e->block) * e->size != len) { fprintf(stderr, "size mismatch\n"); return 2; }
        float * out = calloc(n ? n : 1, sizeof(float));
        e->dq(in, out, n);
        spit(argv[5], out, (size_t) n * sizeof(float));
    } else {
        fprintf(stderr, "bad command\n");
        return 2;
    }
    return 0;
}
