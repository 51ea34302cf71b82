// SOURCES: broker/curlx.c broker/bearer.c broker/log.c broker/jwt.c broker/b64.c broker/err.c broker/json.c
// LIBS: -lcurl
/* libFuzzer target: the TokenReview response parser (parse_response, static in tokenreview.c,
 * reached by including the module as tests/unit/test_tokenreview.c does). The body comes from the
 * Kubernetes API server, or from whatever answers at token_review_url.
 * For every input and a few audiences: the result is AUTHENTICATED, REJECTED or BAD_RESPONSE, and
 * it is exactly what an independent reading of the same JSON (jansson, duplicates refused) gives:
 * kind "TokenReview", status an object, status.authenticated absent/false (REJECTED) or true with
 * our audience, byte for byte, among the strings of status.audiences (AUTHENTICATED); anything else,
 * and any document the strict parser refuses, is BAD_RESPONSE. */
#include "tokenreview.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *audience, enum tokenreview_result got,
                 enum tokenreview_result want)
{
    fprintf(stderr, "fuzz_tokenreview: %s (audience \"%s\": got %d %s, want %d %s)\n", what, audience, (int)got,
            got < TOKENREVIEW__COUNT ? tokenreview_result_name(got) : "?", (int)want,
            tokenreview_result_name(want));
    abort();
}

/* What the document says, read with jansson alone. */
static enum tokenreview_result oracle(const json_t *doc, const char *audience)
{
    const json_t *kind = json_object_get(doc, "kind"), *status = json_object_get(doc, "status");
    if (!json_is_object(doc) || !json_is_string(kind) || json_string_length(kind) != strlen("TokenReview") ||
        memcmp(json_string_value(kind), "TokenReview", strlen("TokenReview")) != 0 || !json_is_object(status))
        return TOKENREVIEW_ERR_BAD_RESPONSE;
    const json_t *auth = json_object_get(status, "authenticated");
    if (auth == NULL || json_is_false(auth))
        return TOKENREVIEW_REJECTED;
    if (!json_is_true(auth))
        return TOKENREVIEW_ERR_BAD_RESPONSE;
    const json_t *auds = json_object_get(status, "audiences");
    for (size_t i = 0; i < json_array_size(auds); i++) {
        const json_t *a = json_array_get(auds, i);
        if (json_is_string(a) && json_string_length(a) == strlen(audience) &&
            memcmp(json_string_value(a), audience, strlen(audience)) == 0)
            return TOKENREVIEW_AUTHENTICATED;
    }
    return TOKENREVIEW_ERR_BAD_RESPONSE; /* authenticated, but not for the audience we asked about */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const audiences[] = {"https://broker.example.com", "sts.amazonaws.com", "x"};
    /* Documents the strict parser accepts hold no raw NUL, so jansson reads them the same way
     * (tests/fuzz/fuzz_json.c checks that); its deeper nesting limit does not matter here. */
    json_t *strict = jwt_json_load_strict(data, size, BROKER_MAX_JSON_DEPTH);
    json_t *doc = strict != NULL ? json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL) : NULL;

    if (strict != NULL && (doc == NULL || !json_equal(strict, doc))) {
        fprintf(stderr, "fuzz_tokenreview: the strict parser and jansson disagree on this input\n");
        abort();
    }
    for (size_t k = 0; k < sizeof(audiences) / sizeof(audiences[0]); k++) {
        enum tokenreview_result r = parse_response(data, size, audiences[k]);
        enum tokenreview_result want = doc != NULL ? oracle(doc, audiences[k]) : TOKENREVIEW_ERR_BAD_RESPONSE;
        if (r != TOKENREVIEW_AUTHENTICATED && r != TOKENREVIEW_REJECTED && r != TOKENREVIEW_ERR_BAD_RESPONSE)
            fail("not a result the parser may return", audiences[k], r, want);
        if (r != want)
            fail("disagrees with the document", audiences[k], r, want);
    }
    json_decref(doc);
    json_decref(strict);
    return 0;
}
