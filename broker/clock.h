/* The monotonic clock in milliseconds, for deadlines, ages and back-offs (immune to wall-clock
 * steps). One definition for the modules that measure time this way. */
#ifndef BROKER_CLOCK_H
#define BROKER_CLOCK_H
#include <stdint.h>
#include <time.h>

static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
