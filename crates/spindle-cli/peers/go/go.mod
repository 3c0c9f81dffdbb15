module spindle/peers/go-scaling

go 1.19
