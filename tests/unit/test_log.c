/* log: one event is one line. A value carrying a newline or another control character (an admin
 * token's name, a database message) cannot forge a second event or split the line. */
#include "test_util.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "log.h"

/* Runs log_msg with stderr sent to a temporary file; returns what was written. */
static size_t capture(char *out, size_t cap, const char *event, const char *value)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    log_msg(LOG_WARN, event, "who=%s status=%d", value, 200);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return n;
}

static void test_control_characters_cannot_forge_lines(void **state)
{
    (void)state;
    char out[2048];
    size_t n = capture(out, sizeof(out), "admin_request", "evil\nts=x level=error event=fake\r\x1b[2J\x7f");
    assert_true(n > 0);
    assert_int_equal(out[n - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + n - 1); /* exactly one line */
    assert_non_null(strstr(out, " level=warn event=admin_request who=evil?ts=x level=error event=fake??[2J? status=200\n"));
}

static void test_plain_values_unchanged_and_long_lines_cut(void **state)
{
    (void)state;
    char out[4096], big[3000];
    size_t n = capture(out, sizeof(out), "e", "repo:acme/demo utf8=\xc3\xa9");
    assert_non_null(strstr(out, " event=e who=repo:acme/demo utf8=\xc3\xa9 status=200\n"));
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    n = capture(out, sizeof(out), "e", big);
    assert_true(n < 1024);
    assert_ptr_equal(strchr(out, '\n'), out + n - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_characters_cannot_forge_lines),
        cmocka_unit_test(test_plain_values_unchanged_and_long_lines_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
