;; A 3x3 sharpen mask over 8-bit interleaved pixels, for src/thumbnail/sharpen-3x3.ts (which says why).
;; Compiled by `npm run build:wasm` (scripts/build-wasm.mjs) into sharpen-3x3.wasm.ts, which is committed;
;; test/wasm-modules.test.ts fails when the two no longer agree.
;;
;; The mask is symmetric: the centre weighs kc, the four edge neighbours ke, the four corners kd. Each output
;; sample is kc*A + ke*B + kd*D + slack, where A is the sample and B and D the integer sums of its edge and
;; corner neighbours (same channel), the picture's edges copied outwards as libvips' convolution extends them;
;; in f64, truncated toward zero and clamped to 0..255, as libvips' cast to 8 bits is.
;; Memory: the source at offset 0, the result right after it, each width*height*channels bytes.
(module
  (memory (export "memory") 1)
  (global $kc (mut f64) (f64.const 0))
  (global $ke (mut f64) (f64.const 0))
  (global $kd (mut f64) (f64.const 0))
  (global $slack (mut f64) (f64.const 0))

  ;; One output sample from its centre A and the sums B and D.
  (func $sample (param $a i32) (param $b i32) (param $d i32) (result i32)
    (local $v i32)
    ;; Truncated toward zero (saturating: no trap), then clamped to 0..255.
    (local.set $v
      (i32.trunc_sat_f64_s
        (f64.add
          (f64.add
            (f64.mul (global.get $kc) (f64.convert_i32_u (local.get $a)))
            (f64.mul (global.get $ke) (f64.convert_i32_u (local.get $b))))
          (f64.add
            (f64.mul (global.get $kd) (f64.convert_i32_u (local.get $d)))
            (global.get $slack)))))
    (select
      (i32.const 255)
      (select (local.get $v) (i32.const 0) (i32.gt_s (local.get $v) (i32.const 0)))
      (i32.gt_s (local.get $v) (i32.const 255))))

  ;; Every channel of the pixel at (x, y), its missing neighbours taken from the edge.
  (func $edge_pixel (param $x i32) (param $y i32) (param $w i32) (param $h i32) (param $c i32) (param $dst i32)
    (local $stride i32) (local $row i32) (local $up i32) (local $down i32)
    (local $here i32) (local $left i32) (local $right i32) (local $ch i32)
    (local.set $stride (i32.mul (local.get $w) (local.get $c)))
    (local.set $row (i32.mul (local.get $y) (local.get $stride)))
    (local.set $up
      (select (i32.sub (local.get $row) (local.get $stride)) (local.get $row) (i32.gt_u (local.get $y) (i32.const 0))))
    (local.set $down
      (select (i32.add (local.get $row) (local.get $stride)) (local.get $row)
        (i32.lt_u (i32.add (local.get $y) (i32.const 1)) (local.get $h))))
    (local.set $here (i32.mul (local.get $x) (local.get $c)))
    (local.set $left
      (select (i32.sub (local.get $here) (local.get $c)) (local.get $here) (i32.gt_u (local.get $x) (i32.const 0))))
    (local.set $right
      (select (i32.add (local.get $here) (local.get $c)) (local.get $here)
        (i32.lt_u (i32.add (local.get $x) (i32.const 1)) (local.get $w))))
    (local.set $ch (i32.const 0))
    (block $done
      (loop $chans
        (br_if $done (i32.ge_u (local.get $ch) (local.get $c)))
        (i32.store8
          (i32.add (local.get $dst) (i32.add (i32.add (local.get $row) (local.get $here)) (local.get $ch)))
          (call $sample
            (i32.load8_u (i32.add (i32.add (local.get $row) (local.get $here)) (local.get $ch)))
            (i32.add
              (i32.add
                (i32.load8_u (i32.add (i32.add (local.get $row) (local.get $left)) (local.get $ch)))
                (i32.load8_u (i32.add (i32.add (local.get $row) (local.get $right)) (local.get $ch))))
              (i32.add
                (i32.load8_u (i32.add (i32.add (local.get $up) (local.get $here)) (local.get $ch)))
                (i32.load8_u (i32.add (i32.add (local.get $down) (local.get $here)) (local.get $ch)))))
            (i32.add
              (i32.add
                (i32.load8_u (i32.add (i32.add (local.get $up) (local.get $left)) (local.get $ch)))
                (i32.load8_u (i32.add (i32.add (local.get $up) (local.get $right)) (local.get $ch))))
              (i32.add
                (i32.load8_u (i32.add (i32.add (local.get $down) (local.get $left)) (local.get $ch)))
                (i32.load8_u (i32.add (i32.add (local.get $down) (local.get $right)) (local.get $ch)))))))
        (local.set $ch (i32.add (local.get $ch) (i32.const 1)))
        (br $chans))))

  (func (export "sharpen")
    (param $w i32) (param $h i32) (param $c i32)
    (param $kc f64) (param $ke f64) (param $kd f64) (param $slack f64)
    (local $stride i32) (local $dst i32) (local $x i32) (local $y i32)
    (local $i i32) (local $end i32) (local $up i32) (local $down i32)
    (local $a16 v128) (local $b16 v128) (local $d16 v128) (local $a32 v128) (local $b32 v128) (local $d32 v128)
    (local $lo v128) (local $hi v128) (local $kcv v128) (local $kev v128) (local $kdv v128) (local $slackv v128)
    (global.set $kc (local.get $kc))
    (global.set $ke (local.get $ke))
    (global.set $kd (local.get $kd))
    (global.set $slack (local.get $slack))
    (local.set $kcv (f64x2.splat (local.get $kc)))
    (local.set $kev (f64x2.splat (local.get $ke)))
    (local.set $kdv (f64x2.splat (local.get $kd)))
    (local.set $slackv (f64x2.splat (local.get $slack)))
    (local.set $stride (i32.mul (local.get $w) (local.get $c)))
    (local.set $dst (i32.mul (local.get $stride) (local.get $h)))
    ;; The border: the first and last rows, then the first and last pixel of every other row.
    (local.set $x (i32.const 0))
    (block $top_done
      (loop $top
        (br_if $top_done (i32.ge_u (local.get $x) (local.get $w)))
        (call $edge_pixel (local.get $x) (i32.const 0) (local.get $w) (local.get $h) (local.get $c) (local.get $dst))
        (call $edge_pixel (local.get $x) (i32.sub (local.get $h) (i32.const 1))
          (local.get $w) (local.get $h) (local.get $c) (local.get $dst))
        (local.set $x (i32.add (local.get $x) (i32.const 1)))
        (br $top)))
    (local.set $y (i32.const 1))
    (block $sides_done
      (loop $sides
        (br_if $sides_done (i32.ge_u (i32.add (local.get $y) (i32.const 1)) (local.get $h)))
        (call $edge_pixel (i32.const 0) (local.get $y) (local.get $w) (local.get $h) (local.get $c) (local.get $dst))
        (call $edge_pixel (i32.sub (local.get $w) (i32.const 1)) (local.get $y)
          (local.get $w) (local.get $h) (local.get $c) (local.get $dst))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $sides)))
    ;; The inside, where every neighbour exists: each row's run of samples, eight at a time, then one at a time.
    (local.set $y (i32.const 1))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (i32.add (local.get $y) (i32.const 1)) (local.get $h)))
        (local.set $i (i32.add (i32.mul (local.get $y) (local.get $stride)) (local.get $c)))
        (local.set $end (i32.sub (i32.mul (i32.add (local.get $y) (i32.const 1)) (local.get $stride)) (local.get $c)))
        (block $eights_done
          (loop $eights
            (br_if $eights_done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $end)))
            (local.set $up (i32.sub (local.get $i) (local.get $stride)))
            (local.set $down (i32.add (local.get $i) (local.get $stride)))
            ;; A, B and D of eight samples, in 16-bit lanes (B and D are at most 4 x 255).
            (local.set $a16 (i16x8.extend_low_i8x16_u (v128.load64_zero (local.get $i))))
            (local.set $b16
              (i16x8.add
                (i16x8.add
                  (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.sub (local.get $i) (local.get $c))))
                  (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.add (local.get $i) (local.get $c)))))
                (i16x8.add (i16x8.extend_low_i8x16_u (v128.load64_zero (local.get $up))) (i16x8.extend_low_i8x16_u (v128.load64_zero (local.get $down))))))
            (local.set $d16
              (i16x8.add
                (i16x8.add
                  (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.sub (local.get $up) (local.get $c))))
                  (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.add (local.get $up) (local.get $c)))))
                (i16x8.add
                  (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.sub (local.get $down) (local.get $c))))
                  (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.add (local.get $down) (local.get $c)))))))
            ;; Samples 0-3, then 4-7: widened to 32-bit lanes, two at a time in f64 (lanes 2-3 moved down to 0-1),
            ;; truncated, and the two pairs' results joined in one i32x4.
            (local.set $a32 (i32x4.extend_low_i16x8_u (local.get $a16)))
            (local.set $b32 (i32x4.extend_low_i16x8_u (local.get $b16)))
            (local.set $d32 (i32x4.extend_low_i16x8_u (local.get $d16)))
            (local.set $lo
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (i32x4.trunc_sat_f64x2_s_zero
                (f64x2.add
                  (f64x2.add (f64x2.mul (local.get $kcv) (f64x2.convert_low_i32x4_u (local.get $a32)))
                    (f64x2.mul (local.get $kev) (f64x2.convert_low_i32x4_u (local.get $b32))))
                  (f64x2.add (f64x2.mul (local.get $kdv) (f64x2.convert_low_i32x4_u (local.get $d32))) (local.get $slackv))))
              (i32x4.trunc_sat_f64x2_s_zero
                (f64x2.add
                  (f64x2.add (f64x2.mul (local.get $kcv) (f64x2.convert_low_i32x4_u (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a32) (local.get $a32))))
                    (f64x2.mul (local.get $kev) (f64x2.convert_low_i32x4_u (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $b32) (local.get $b32)))))
                  (f64x2.add (f64x2.mul (local.get $kdv) (f64x2.convert_low_i32x4_u (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d32) (local.get $d32)))) (local.get $slackv))))))
            (local.set $a32 (i32x4.extend_high_i16x8_u (local.get $a16)))
            (local.set $b32 (i32x4.extend_high_i16x8_u (local.get $b16)))
            (local.set $d32 (i32x4.extend_high_i16x8_u (local.get $d16)))
            (local.set $hi
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (i32x4.trunc_sat_f64x2_s_zero
                (f64x2.add
                  (f64x2.add (f64x2.mul (local.get $kcv) (f64x2.convert_low_i32x4_u (local.get $a32)))
                    (f64x2.mul (local.get $kev) (f64x2.convert_low_i32x4_u (local.get $b32))))
                  (f64x2.add (f64x2.mul (local.get $kdv) (f64x2.convert_low_i32x4_u (local.get $d32))) (local.get $slackv))))
              (i32x4.trunc_sat_f64x2_s_zero
                (f64x2.add
                  (f64x2.add (f64x2.mul (local.get $kcv) (f64x2.convert_low_i32x4_u (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a32) (local.get $a32))))
                    (f64x2.mul (local.get $kev) (f64x2.convert_low_i32x4_u (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $b32) (local.get $b32)))))
                  (f64x2.add (f64x2.mul (local.get $kdv) (f64x2.convert_low_i32x4_u (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d32) (local.get $d32)))) (local.get $slackv))))))
            ;; Eight results, narrowed to 16 bits (signed, saturating), then to 8 (unsigned, saturating: the clamp to 0..255).
            (i64.store (i32.add (local.get $dst) (local.get $i))
              (i64x2.extract_lane 0
                (i8x16.narrow_i16x8_u (i16x8.narrow_i32x4_s (local.get $lo) (local.get $hi)) (v128.const i64x2 0 0))))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $eights)))
        (block $ones_done
          (loop $ones
            (br_if $ones_done (i32.ge_u (local.get $i) (local.get $end)))
            (local.set $up (i32.sub (local.get $i) (local.get $stride)))
            (local.set $down (i32.add (local.get $i) (local.get $stride)))
            (i32.store8
              (i32.add (local.get $dst) (local.get $i))
              (call $sample
                (i32.load8_u (local.get $i))
                (i32.add
                  (i32.add
                    (i32.load8_u (i32.sub (local.get $i) (local.get $c)))
                    (i32.load8_u (i32.add (local.get $i) (local.get $c))))
                  (i32.add (i32.load8_u (local.get $up)) (i32.load8_u (local.get $down))))
                (i32.add
                  (i32.add
                    (i32.load8_u (i32.sub (local.get $up) (local.get $c)))
                    (i32.load8_u (i32.add (local.get $up) (local.get $c))))
                  (i32.add
                    (i32.load8_u (i32.sub (local.get $down) (local.get $c)))
                    (i32.load8_u (i32.add (local.get $down) (local.get $c)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $ones)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $rows))))
)
