;; A sharpen mask of 5x5 and wider over 8-bit interleaved pixels, as separable-sharpen.ts defines it:
;; out = centre*x - blur*(x blurred by the normalised Gaussian g (x) g), truncated toward zero and clamped to
;; 0..255 as libvips' cast is, plus `slack` (see separable-sharpen.ts). Compiled by `npm run build:wasm`
;; into sharpen-separable.wasm.ts; test/wasm-modules.test.ts fails when the two no longer agree.
;;
;; Memory, laid out by the caller (separable-sharpen.ts):
;;   taps   at 0:          reach+1 f64, g[0..reach] normalised (the blur's weights; g[t] for offsets -t and +t)
;;   src    at $src:       width*height*channels bytes
;;   rows   at $tmp:       width*height*channels f32, the row pass's sums
;;   dst    at $dst:       width*height*channels bytes
;; Edges are copied outwards, as libvips' convolution extends them: a neighbour past the edge is the edge's.
;; Symmetric taps are summed in pairs first (integers in the row pass: exact), then weighted in f64; SIMD where
;; every neighbour of the run exists, one sample at a time elsewhere.
(module
  (memory (export "memory") 1)

  ;; g[t] (f64 at t*8).
  (func $tap (param $t i32) (result f64)
    (f64.load (i32.shl (local.get $t) (i32.const 3))))

  (func $clamp (param $v i32) (param $max i32) (result i32)
    (select (i32.const 0)
      (select (local.get $max) (local.get $v) (i32.gt_s (local.get $v) (local.get $max)))
      (i32.lt_s (local.get $v) (i32.const 0))))

  ;; The row pass at (x, y, channel ch), neighbours' x clamped.
  (func $row_sample (param $src i32) (param $x i32) (param $y i32) (param $ch i32)
    (param $w i32) (param $c i32) (param $reach i32) (result f32)
    (local $t i32) (local $base i32) (local $sum f64)
    (local.set $base (i32.add (local.get $src) (i32.add (i32.mul (i32.mul (local.get $y) (local.get $w)) (local.get $c)) (local.get $ch))))
    (local.set $sum
      (f64.mul (call $tap (i32.const 0))
        (f64.convert_i32_u (i32.load8_u (i32.add (local.get $base) (i32.mul (local.get $x) (local.get $c)))))))
    (local.set $t (i32.const 1))
    (block $done
      (loop $taps
        (br_if $done (i32.gt_u (local.get $t) (local.get $reach)))
        (local.set $sum
          (f64.add (local.get $sum)
            (f64.mul (call $tap (local.get $t))
              (f64.convert_i32_u
                (i32.add
                  (i32.load8_u (i32.add (local.get $base)
                    (i32.mul (call $clamp (i32.sub (local.get $x) (local.get $t)) (i32.sub (local.get $w) (i32.const 1))) (local.get $c))))
                  (i32.load8_u (i32.add (local.get $base)
                    (i32.mul (call $clamp (i32.add (local.get $x) (local.get $t)) (i32.sub (local.get $w) (i32.const 1))) (local.get $c)))))))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $taps)))
    (f32.demote_f64 (local.get $sum)))

  ;; The result at sample offset $k of row $y: the column pass over the row sums (rows clamped), then the combination.
  (func $out_sample (param $src i32) (param $tmp i32) (param $dst i32) (param $k i32) (param $y i32)
    (param $h i32) (param $stride i32) (param $reach i32)
    (param $centre f64) (param $blur f64) (param $slack f64)
    (local $t i32) (local $sum f64) (local $v i32)
    (local.set $sum
      (f64.mul (call $tap (i32.const 0))
        (f64.promote_f32 (f32.load (i32.add (local.get $tmp)
          (i32.shl (i32.add (i32.mul (local.get $y) (local.get $stride)) (local.get $k)) (i32.const 2)))))))
    (local.set $t (i32.const 1))
    (block $done
      (loop $taps
        (br_if $done (i32.gt_u (local.get $t) (local.get $reach)))
        (local.set $sum
          (f64.add (local.get $sum)
            (f64.mul (call $tap (local.get $t))
              (f64.add
                (f64.promote_f32 (f32.load (i32.add (local.get $tmp) (i32.shl
                  (i32.add (i32.mul (call $clamp (i32.sub (local.get $y) (local.get $t)) (i32.sub (local.get $h) (i32.const 1))) (local.get $stride)) (local.get $k))
                  (i32.const 2)))))
                (f64.promote_f32 (f32.load (i32.add (local.get $tmp) (i32.shl
                  (i32.add (i32.mul (call $clamp (i32.add (local.get $y) (local.get $t)) (i32.sub (local.get $h) (i32.const 1))) (local.get $stride)) (local.get $k))
                  (i32.const 2)))))))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $taps)))
    (local.set $v
      (i32.trunc_sat_f64_s
        (f64.add
          (f64.sub
            (f64.mul (local.get $centre)
              (f64.convert_i32_u (i32.load8_u (i32.add (local.get $src) (i32.add (i32.mul (local.get $y) (local.get $stride)) (local.get $k))))))
            (f64.mul (local.get $blur) (local.get $sum)))
          (local.get $slack))))
    (i32.store8 (i32.add (local.get $dst) (i32.add (i32.mul (local.get $y) (local.get $stride)) (local.get $k)))
      (select (i32.const 255)
        (select (local.get $v) (i32.const 0) (i32.gt_s (local.get $v) (i32.const 0)))
        (i32.gt_s (local.get $v) (i32.const 255)))))

  (func (export "sharpen")
    (param $src i32) (param $tmp i32) (param $dst i32)
    (param $w i32) (param $h i32) (param $c i32) (param $reach i32)
    (param $centre f64) (param $blur f64) (param $slack f64)
    (local $stride i32) (local $x i32) (local $y i32) (local $ch i32) (local $k i32) (local $end i32)
    (local $t i32) (local $at i32) (local $off i32) (local $pair v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128) (local $g v128)
    (local $row i32) (local $centrev v128) (local $blurv v128) (local $slackv v128) (local $lo v128) (local $hi v128)
    (local.set $stride (i32.mul (local.get $w) (local.get $c)))
    (local.set $centrev (f64x2.splat (local.get $centre)))
    (local.set $blurv (f64x2.splat (local.get $blur)))
    (local.set $slackv (f64x2.splat (local.get $slack)))

    ;; The row pass. Each row: its first and last `reach` pixels one sample at a time (x clamped), the samples
    ;; between eight at a time: pairs of neighbours summed as 16-bit integers, weighted in f64, stored as f32.
    (local.set $y (i32.const 0))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $y) (local.get $h)))
        (local.set $row (i32.mul (local.get $y) (local.get $stride)))
        (local.set $x (i32.const 0))
        (block $edges_done
          (loop $edges
            (br_if $edges_done (i32.ge_u (local.get $x) (local.get $w)))
            (if (i32.or (i32.lt_u (local.get $x) (local.get $reach))
                  (i32.ge_u (i32.add (local.get $x) (local.get $reach)) (local.get $w)))
              (then
                (local.set $ch (i32.const 0))
                (block $chans_done
                  (loop $chans
                    (br_if $chans_done (i32.ge_u (local.get $ch) (local.get $c)))
                    (f32.store
                      (i32.add (local.get $tmp) (i32.shl
                        (i32.add (local.get $row) (i32.add (i32.mul (local.get $x) (local.get $c)) (local.get $ch))) (i32.const 2)))
                      (call $row_sample (local.get $src) (local.get $x) (local.get $y) (local.get $ch)
                        (local.get $w) (local.get $c) (local.get $reach)))
                    (local.set $ch (i32.add (local.get $ch) (i32.const 1)))
                    (br $chans)))))
            (local.set $x (i32.add (local.get $x) (i32.const 1)))
            (br $edges)))
        ;; The inside: sample offsets [reach*c, stride - reach*c) of the row.
        (local.set $off (i32.mul (local.get $reach) (local.get $c)))
        (local.set $k (local.get $off))
        (local.set $end (i32.sub (local.get $stride) (local.get $off)))
        (block $eights_done
          (loop $eights
            (br_if $eights_done (i32.gt_s (i32.add (local.get $k) (i32.const 8)) (local.get $end)))
            (local.set $at (i32.add (local.get $src) (i32.add (local.get $row) (local.get $k))))
            ;; Tap 0: the samples themselves.
            (local.set $pair (i16x8.extend_low_i8x16_u (v128.load64_zero (local.get $at))))
            (local.set $g (f64x2.splat (f64.load (i32.const 0))))
            (local.set $lo (i32x4.extend_low_i16x8_u (local.get $pair)))
            (local.set $hi (i32x4.extend_high_i16x8_u (local.get $pair)))
            (local.set $s0 (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u (local.get $lo))))
            (local.set $s1 (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $lo) (local.get $lo)))))
            (local.set $s2 (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u (local.get $hi))))
            (local.set $s3 (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $hi) (local.get $hi)))))
            (local.set $t (i32.const 1))
            (block $taps_done
              (loop $taps
                (br_if $taps_done (i32.gt_u (local.get $t) (local.get $reach)))
                (local.set $off (i32.mul (local.get $t) (local.get $c)))
                (local.set $pair
                  (i16x8.add
                    (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.sub (local.get $at) (local.get $off))))
                    (i16x8.extend_low_i8x16_u (v128.load64_zero (i32.add (local.get $at) (local.get $off))))))
                (local.set $g (f64x2.splat (f64.load (i32.shl (local.get $t) (i32.const 3)))))
                (local.set $lo (i32x4.extend_low_i16x8_u (local.get $pair)))
                (local.set $hi (i32x4.extend_high_i16x8_u (local.get $pair)))
                (local.set $s0 (f64x2.add (local.get $s0) (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u (local.get $lo)))))
                (local.set $s1 (f64x2.add (local.get $s1) (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $lo) (local.get $lo))))))
                (local.set $s2 (f64x2.add (local.get $s2) (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u (local.get $hi)))))
                (local.set $s3 (f64x2.add (local.get $s3) (f64x2.mul (local.get $g) (f64x2.convert_low_i32x4_u
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $hi) (local.get $hi))))))
                (local.set $t (i32.add (local.get $t) (i32.const 1)))
                (br $taps)))
            ;; Eight f32: samples 0-3, then 4-7.
            (local.set $at (i32.add (local.get $tmp) (i32.shl (i32.add (local.get $row) (local.get $k)) (i32.const 2))))
            (v128.store (local.get $at)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
                (f32x4.demote_f64x2_zero (local.get $s0)) (f32x4.demote_f64x2_zero (local.get $s1))))
            (v128.store (i32.add (local.get $at) (i32.const 16))
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
                (f32x4.demote_f64x2_zero (local.get $s2)) (f32x4.demote_f64x2_zero (local.get $s3))))
            (local.set $k (i32.add (local.get $k) (i32.const 8)))
            (br $eights)))
        ;; What is left of the inside, one sample at a time.
        (block $ones_done
          (loop $ones
            (br_if $ones_done (i32.ge_s (local.get $k) (local.get $end)))
            (f32.store (i32.add (local.get $tmp) (i32.shl (i32.add (local.get $row) (local.get $k)) (i32.const 2)))
              (call $row_sample (local.get $src)
                (i32.div_u (local.get $k) (local.get $c)) (local.get $y) (i32.rem_u (local.get $k) (local.get $c))
                (local.get $w) (local.get $c) (local.get $reach)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $ones)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $rows)))

    ;; The column pass and the combination. Rows within `reach` of the top or bottom: one sample at a time (rows
    ;; clamped); the others four samples at a time, two by two in f64.
    (local.set $y (i32.const 0))
    (block $out_rows_done
      (loop $out_rows
        (br_if $out_rows_done (i32.ge_u (local.get $y) (local.get $h)))
        (local.set $row (i32.mul (local.get $y) (local.get $stride)))
        (local.set $k (i32.const 0))
        (if (i32.and (i32.ge_u (local.get $y) (local.get $reach))
              (i32.lt_u (i32.add (local.get $y) (local.get $reach)) (local.get $h)))
          (then
            (block $fours_done
              (loop $fours
                (br_if $fours_done (i32.gt_u (i32.add (local.get $k) (i32.const 4)) (local.get $stride)))
                (local.set $at (i32.add (local.get $tmp) (i32.shl (i32.add (local.get $row) (local.get $k)) (i32.const 2))))
                (local.set $pair (v128.load (local.get $at)))
                (local.set $g (f64x2.splat (f64.load (i32.const 0))))
                (local.set $s0 (f64x2.mul (local.get $g) (f64x2.promote_low_f32x4 (local.get $pair))))
                (local.set $s1 (f64x2.mul (local.get $g) (f64x2.promote_low_f32x4
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $pair) (local.get $pair)))))
                (local.set $t (i32.const 1))
                (block $ctaps_done
                  (loop $ctaps
                    (br_if $ctaps_done (i32.gt_u (local.get $t) (local.get $reach)))
                    (local.set $off (i32.shl (i32.mul (local.get $t) (local.get $stride)) (i32.const 2)))
                    (local.set $lo (v128.load (i32.sub (local.get $at) (local.get $off))))
                    (local.set $hi (v128.load (i32.add (local.get $at) (local.get $off))))
                    (local.set $g (f64x2.splat (f64.load (i32.shl (local.get $t) (i32.const 3)))))
                    (local.set $s0 (f64x2.add (local.get $s0) (f64x2.mul (local.get $g)
                      (f64x2.add (f64x2.promote_low_f32x4 (local.get $lo)) (f64x2.promote_low_f32x4 (local.get $hi))))))
                    (local.set $s1 (f64x2.add (local.get $s1) (f64x2.mul (local.get $g)
                      (f64x2.add
                        (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $lo) (local.get $lo)))
                        (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $hi) (local.get $hi)))))))
                    (local.set $t (i32.add (local.get $t) (i32.const 1)))
                    (br $ctaps)))
                ;; centre*x - blur*sum + slack for the four, truncated, narrowed with saturation (the clamp to 0..255).
                (local.set $pair
                  (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
                    (v128.load32_zero (i32.add (local.get $src) (i32.add (local.get $row) (local.get $k)))))))
                (local.set $s0
                  (f64x2.add
                    (f64x2.sub (f64x2.mul (local.get $centrev) (f64x2.convert_low_i32x4_u (local.get $pair)))
                      (f64x2.mul (local.get $blurv) (local.get $s0)))
                    (local.get $slackv)))
                (local.set $s1
                  (f64x2.add
                    (f64x2.sub
                      (f64x2.mul (local.get $centrev) (f64x2.convert_low_i32x4_u
                        (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $pair) (local.get $pair))))
                      (f64x2.mul (local.get $blurv) (local.get $s1)))
                    (local.get $slackv)))
                (i32.store (i32.add (local.get $dst) (i32.add (local.get $row) (local.get $k)))
                  (i32x4.extract_lane 0
                    (i8x16.narrow_i16x8_u
                      (i16x8.narrow_i32x4_s
                        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
                          (i32x4.trunc_sat_f64x2_s_zero (local.get $s0)) (i32x4.trunc_sat_f64x2_s_zero (local.get $s1)))
                        (v128.const i64x2 0 0))
                      (v128.const i64x2 0 0))))
                (local.set $k (i32.add (local.get $k) (i32.const 4)))
                (br $fours)))))
        ;; The rest of the row (all of it near the top and bottom), one sample at a time.
        (block $rest_done
          (loop $rest
            (br_if $rest_done (i32.ge_u (local.get $k) (local.get $stride)))
            (call $out_sample (local.get $src) (local.get $tmp) (local.get $dst) (local.get $k) (local.get $y)
              (local.get $h) (local.get $stride) (local.get $reach) (local.get $centre) (local.get $blur) (local.get $slack))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $rest)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $out_rows))))
)
