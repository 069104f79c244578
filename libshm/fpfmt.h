/* fpfmt.h: floats as serde_json writes them (internal to libshmring).
 *
 * The digits are the shortest that read back as the same value (ties to the closest, then
 * to even: what Ryu finds), laid out as the Rust ryu crate lays them out for serde_json:
 *   f64: 100.0  12.34  0.00001  1e16  1.2345678901234568e17  5e-324  0.0  -0.0
 *   f32: the same with 13 in place of 16 and 0.000001 the smallest fixed-point magnitude
 * NaN and +-inf are written "null", as serde_json writes them. */
#ifndef SHMRING_FPFMT_H
#define SHMRING_FPFMT_H

#include <stddef.h>

/* The room buf must have: the longest text is 24 bytes ("-2.2250738585072014e-308"), and
 * the digits are stored 8 or 16 bytes at a time past the text's end, never past buf[32)
 * (the farthest: a float's "-0.0000012345678", whose digits are stored from buf[8)). */
#define FPFMT_MAX 32

/* Write v's text to buf (at least FPFMT_MAX bytes, no NUL added); returns its length. */
size_t fpfmt_f64(char *buf, double v);
size_t fpfmt_f32(char *buf, float v);

#endif
