# plot.gnuplot - throughput and p99 send latency against the number of producers, one line
# per peer, from the CSV shmring-bench writes (rows of kind "e2e": the median runs).
#
#   gnuplot -e "csv='docs/bench/results.csv'; png='docs/bench/plot.png'; machine='...'" \
#           tools/bench/plot.gnuplot
#
# Solid lines: transport mode, blocking sends; dashed: transport, non-blocking (drops
# counted, so its throughput is what was written, not what was offered).

if (!exists("csv")) csv = 'docs/bench/results.csv'
if (!exists("png")) png = 'docs/bench/plot.png'
if (!exists("machine")) machine = ''

set datafile separator ','
set terminal pngcairo size 1500,1000 font 'DejaVu Sans,11' noenhanced
set output png

# Column numbers of the CSV header (shmring-bench.c, csv_header).
C_KIND = 1; C_MODE = 2; C_SEND = 3; C_P = 4; C_PEER = 5; C_RATE = 12; C_P99 = 14; C_CPU = 22

peers = 'shmring pipe posix-mq unix-dgram append-file zmq'
colors = '#d62728 #1f77b4 #2ca02c #9467bd #8c564b #ff7f0e'
# One series: the median rows of one mode, send kind and peer (awk keeps them contiguous,
# so that linespoints joins them).
src(mode, send, peer) = sprintf("< awk -F, '$1==\"e2e\" && $2==\"%s\" && $3==\"%s\" && $5==\"%s\"' '%s'", \
                                mode, send, peer, csv)

set multiplot layout 2,2 title "shmring-bench: P producers -> one consumer -> JSONL on the local disk   (solid: blocking sends, dashed: non-blocking)\n".machine
set key top right font ',9' samplen 3 opaque box
set grid
set xlabel 'producers P'
set xtics (1, 2, 4, 8)
set logscale x 2
set xrange [0.9:9]

set title 'end-to-end throughput, transport (pre-encoded records)'
set ylabel 'records written / s (millions)'
set yrange [0:*]
plot for [i=1:words(peers)] src('transport','blocking',word(peers,i)) using (column(C_P)):(column(C_RATE)/1e6) \
        with linespoints lw 2 pt 7 lc rgb word(colors,i) title word(peers,i), \
     for [i=1:words(peers)] src('transport','nonblocking',word(peers,i)) using (column(C_P)):(column(C_RATE)/1e6) \
        with linespoints lw 1 dt 2 pt 6 lc rgb word(colors,i) notitle

set title 'producer send latency p99 (accepted sends), transport'
set ylabel 'ns (log scale)'
set logscale y 10
set yrange [*:*]
plot for [i=1:words(peers)] src('transport','blocking',word(peers,i)) using (column(C_P)):(column(C_P99)) \
        with linespoints lw 2 pt 7 lc rgb word(colors,i) title word(peers,i), \
     for [i=1:words(peers)] src('transport','nonblocking',word(peers,i)) using (column(C_P)):(column(C_P99)) \
        with linespoints lw 1 dt 2 pt 6 lc rgb word(colors,i) notitle
unset logscale y

set title 'end-to-end throughput, pipeline (built + encoded per send)'
set ylabel 'records written / s (millions)'
set yrange [0:*]
plot for [i=1:words(peers)] src('pipeline','blocking',word(peers,i)) using (column(C_P)):(column(C_RATE)/1e6) \
        with linespoints lw 2 pt 7 lc rgb word(colors,i) title word(peers,i), \
     for [i=1:words(peers)] src('pipeline','nonblocking',word(peers,i)) using (column(C_P)):(column(C_RATE)/1e6) \
        with linespoints lw 1 dt 2 pt 6 lc rgb word(colors,i) notitle

set title 'CPU per record written, all processes, transport'
set ylabel 'ns / record (log scale)'
set logscale y 10
set yrange [*:*]
plot for [i=1:words(peers)] src('transport','blocking',word(peers,i)) using (column(C_P)):(column(C_CPU)) \
        with linespoints lw 2 pt 7 lc rgb word(colors,i) title word(peers,i), \
     for [i=1:words(peers)] src('transport','nonblocking',word(peers,i)) using (column(C_P)):(column(C_CPU)) \
        with linespoints lw 1 dt 2 pt 6 lc rgb word(colors,i) notitle

unset multiplot
