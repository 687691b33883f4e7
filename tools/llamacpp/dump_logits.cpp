// dump_logits: llama.cpp's logits at every prompt position, as a small JSON golden for tern's tests
// (crates/tern-cli/tests/llamacpp_logits.rs). Built against libllama by tools/llamacpp/logits_goldens.sh.
//
//   dump_logits MODEL.gguf PROMPTS.txt TOP_K > out.json
//
// Each line of PROMPTS.txt is one prompt (UTF-8, "\n" escapes not interpreted). It is tokenized by
// llama.cpp itself (`llama_tokenize`, add_special = true as llama-cli does, parse_special = false), and
// the whole prompt is decoded in ONE batch with every position's logits requested. The context uses f32
// K/V caches and no flash attention so that the reference carries as little extra rounding as llama.cpp
// allows; its matmuls still quantize activations to q8 for the block types, as on any llama.cpp CPU run.
// Per position we write the top-K token ids and their logits (descending) plus the mean and standard
// deviation of the whole logit row, so a test can check both the head of the distribution and its bulk.
#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

static void json_string(const std::string & s) {
    putchar('"');
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPTS.txt TOP_K\n", argv[0]);
        return 2;
    }
    const std::string model_path = argv[1];
    const int top_k = std::atoi(argv[3]);
    std::vector<std::string> prompts;
    {
        std::ifstream in(argv[2]);
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty()) {
                prompts.push_back(line);
            }
        }
    }
    if (prompts.empty() || top_k < 1) {
        fprintf(stderr, "no prompts in %s or bad TOP_K\n", argv[2]);
        return 2;
    }

    llama_backend_init();
    llama_log_set([](ggml_log_level level, const char * text, void *) {
        if (level >= GGML_LOG_LEVEL_WARN) {
            fputs(text, stderr);
        }
    }, nullptr);
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) {
        fprintf(stderr, "failed to load %s\n", model_path.c_str());
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    printf("{\n  \"generator\": \"tools/llamacpp/dump_logits.cpp (llama.cpp from llama-cpp-python 0.3.36, CPU, f32 KV, no flash attention)\",\n");
    printf("  \"n_vocab\": %d,\n  \"top_k\": %d,\n  \"prompts\": [", n_vocab, top_k);
    for (size_t p = 0; p < prompts.size(); p++) {
        const std::string & text = prompts[p];
        std::vector<llama_token> ids(text.size() + 8);
        int n = llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), true, false);
        if (n < 0) {
            fprintf(stderr, "tokenize failed\n");
            return 1;
        }
        ids.resize(n);

        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = std::max<uint32_t>(64, (uint32_t) n);
        cp.n_batch = cp.n_ctx;
        cp.n_ubatch = cp.n_ctx;
        cp.n_threads = 2;
        cp.n_threads_batch = 2;
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.no_perf = true;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) {
            fprintf(stderr, "failed to create a context\n");
            return 1;
        }
        llama_batch batch = llama_batch_init(n, 0, 1);
        for (int i = 0; i < n; i++) {
            batch.token[i] = ids[i];
            batch.pos[i] = i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        batch.n_tokens = n;
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "llama_decode failed\n");
            return 1;
        }

        printf("%s\n    {\"text\": ", p ? "," : "");
        json_string(text);
        printf(",\n     \"ids\": [");
        for (int i = 0; i < n; i++) {
            printf("%s%d", i ? ", " : "", ids[i]);
        }
        printf("],\n     \"positions\": [");
        std::vector<int> order(n_vocab);
        for (int i = 0; i < n; i++) {
            const float * row = llama_get_logits_ith(ctx, i);
            double sum = 0, sq = 0;
            for (int v = 0; v < n_vocab; v++) {
                sum += row[v];
            }
            const double mean = sum / n_vocab;
            for (int v = 0; v < n_vocab; v++) {
                sq += (row[v] - mean) * (row[v] - mean);
            }
            std::iota(order.begin(), order.end(), 0);
            std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int a, int b) {
                return row[a] > row[b] || (row[a] == row[b] && a < b);
            });
            printf("%s\n      {\"mean\": %.6g, \"std\": %.6g, \"top_ids\": [", i ? "," : "", mean, std::sqrt(sq / n_vocab));
            for (int k = 0; k < top_k; k++) {
                printf("%s%d", k ? ", " : "", order[k]);
            }
            printf("], \"top_logits\": [");
            for (int k = 0; k < top_k; k++) {
                printf("%s%.6g", k ? ", " : "", row[order[k]]);
            }
            printf("]}");
        }
        printf("]}");
        llama_batch_free(batch);
        llama_free(ctx);
    }
    printf("\n  ]\n}\n");
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
