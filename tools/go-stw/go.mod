module gostw
go 1.23
